#!/usr/bin/env bash
# Builds the course as a static site in artifacts/site/ (open artifacts/site/index.html): every numbered notebook
# executed, with its outputs, plus the readers' pages. Works offline: MathJax and plotly.js are served from the site.
#
#   bash docs/site/build.sh [--quick] [--reuse]
#
#   (default)  runs every notebook in course mode (about 70 minutes on 2 cores) into artifacts/site-notebooks/course/
#   --quick    runs them in quick mode (DIFFUSION_QUICK=1, about 15 minutes) into artifacts/site-notebooks/quick/
#   --reuse    runs nothing: takes the executed notebooks of an earlier run — for --quick the copies the notebook tests
#              write to artifacts/notebooks/, for course mode an earlier build's artifacts/site-notebooks/course/
#
# Needs the .NET 10 SDK, Jupyter (jupyter-nbconvert jupyter-client python3-ipykernel) when it runs notebooks, and
# Debian's python3-sphinx python3-nbsphinx python3-myst-parser furo libjs-mathjax pandoc.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=course
reuse=0
for arg in "$@"; do
  case "$arg" in
    --quick) mode=quick ;;
    --reuse) reuse=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option '$arg': use --quick (quick-mode runs) and/or --reuse (executed notebooks already there)" >&2; exit 2 ;;
  esac
done

# Debian's Python has Sphinx and its extensions; a python3 earlier on PATH (pyenv, a venv) may not.
python=/usr/bin/python3
[ -x "$python" ] || python=python3
if ! "$python" -c 'import sphinx, nbsphinx, furo, myst_parser' 2>/dev/null; then
  echo "error: Sphinx, nbsphinx, furo and myst-parser are needed: sudo apt-get install -y python3-sphinx python3-nbsphinx python3-myst-parser furo libjs-mathjax pandoc" >&2
  exit 2
fi

start=$(date +%s)
if [ "$reuse" = 1 ]; then
  if [ "$mode" = quick ]; then executed=artifacts/notebooks; else executed=artifacts/site-notebooks/course; fi
  echo "== building the $mode-mode site from the executed notebooks in $executed/"
else
  executed=artifacts/site-notebooks/$mode
  command -v jupyter-nbconvert >/dev/null 2>&1 || {
    echo "error: running the notebooks needs Jupyter: sudo apt-get install -y jupyter-nbconvert jupyter-client python3-ipykernel (or pass --reuse)" >&2
    exit 2
  }
  # The pinned kernel, registered in a private Jupyter folder (not your home), on ports of its own so that it can run
  # beside the tests' kernels.
  jupyter_dir=$PWD/artifacts/site-jupyter
  dotnet tool restore >/dev/null
  mkdir -p "$jupyter_dir/kernels" "$executed"
  dotnet tool run dotnet-interactive -- jupyter install --path "$jupyter_dir/kernels" >/dev/null
  sed -i 's/"2048-3000"/"5001-6000"/' "$jupyter_dir/kernels/.net-csharp/kernel.json"
  dotnet build lib/Diffusion.Notebooks -c Release -nologo -v q >/dev/null
  quick=""
  [ "$mode" = quick ] && quick=1
  for nb in notebooks/[0-9]*.ipynb; do
    name=$(basename "$nb")
    t0=$(date +%s)
    (cd notebooks && JUPYTER_PATH="$jupyter_dir" JUPYTER_DATA_DIR="$jupyter_dir" JUPYTER_CONFIG_DIR="$jupyter_dir/config" \
      JUPYTER_RUNTIME_DIR="$jupyter_dir/runtime" JUPYTER_PLATFORM_DIRS=1 DIFFUSION_QUICK="$quick" \
      jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=7200 \
        --output-dir "$OLDPWD/$executed" --output "$name" "$name" >/dev/null 2>&1) \
      || { echo "error: $name failed to run; see the cell errors in $executed/$name" >&2; exit 1; }
    echo "   ran $name in $(( $(date +%s) - t0 )) s"
  done
fi

"$python" docs/site/prepare.py --executed "$executed" --out artifacts/site-src --mode "$mode"
rm -rf artifacts/site
"$python" -m sphinx -b html -q -d artifacts/site-doctrees artifacts/site-src artifacts/site
# nbsphinx copies each notebook beside its page; no page links them, and the repository has the notebooks.
rm -f artifacts/site/.buildinfo artifacts/site/*.ipynb
echo "== site: artifacts/site/index.html ($(du -sh artifacts/site | cut -f1), $(find artifacts/site -name '*.html' | wc -l) pages) in $(( $(date +%s) - start )) s"
