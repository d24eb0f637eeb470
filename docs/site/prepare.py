#!/usr/bin/python3
"""Prepares the Sphinx sources of the course site from executed notebooks (run by build.sh).

Writes OUT/ (artifacts/site-src/): every numbered notebook with its outputs, the readers' pages (TEACHERS.md, docs/*.md,
data/README.md, CHANGELOG.md) with their links turned into links between site pages, a landing page with the syllabus
and one picture per lesson, conf.py, and _static/ with one shared plotly.js and a trimmed local MathJax. On the way it
- drops the solution cells the tests insert after each exercise (the site shows what a learner sees),
- drops the kernel's start-up output, whose script probes local ports for the kernel's web API,
- moves the plotly.js that each notebook inlines into one shared file,
- keeps image/gif outputs (nbconvert and nbsphinx drop them) as files shown with <img>.
"""
import argparse
import base64
import json
import os
import posixpath
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MATHJAX = Path("/usr/share/javascript/mathjax")
# Readers' pages: repository path -> page name on the site. Missing ones are left out.
PAGES = [
    ("notebooks/TEACHERS.md", "teachers", "For teachers"),
    ("docs/results.md", "results", "Results"),
    ("docs/benchmarks.md", "benchmarks", "Benchmarks"),
    ("docs/command-line.md", "command-line", "The command line"),
    ("docs/library.md", "library", "The library"),
    ("docs/troubleshooting.md", "troubleshooting", "Troubleshooting"),
    ("docs/guarantees.md", "guarantees", "What the tests guarantee"),
    ("docs/notebook-measurements.md", "notebook-measurements", "What each notebook measures"),
    ("data/README.md", "data", "Shipped data and models"),
    ("docs/pytorch/README.md", "pytorch", "PyTorch interop"),
    ("CHANGELOG.md", "changelog", "Changelog"),
]
IMAGE_SUFFIXES = {".png", ".svg", ".gif", ".jpg", ".jpeg"}
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)(\s+\"[^\"]*\")?\)")


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Site:
    def __init__(self, out: Path, notebooks):
        self.out = out
        self.docs = {f"notebooks/{n}": n for n in notebooks}        # repository path -> file name in the sources
        self.docs["README.md"] = "index.md"
        self.docs["docs/README.md"] = "index.md"
        for repo_path, name, _ in PAGES:
            if (REPO / repo_path).exists():
                self.docs[repo_path] = name + ".md"

    def rewrite_links(self, text, from_dir):
        """Links between repository files become links between site pages; pictures are copied along; links to other
        repository files (source code, data files) become plain text, since the site does not carry them."""

        def one(m):
            bang, label, target, title = m.group(1), m.group(2), m.group(3), m.group(4) or ""
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                return m.group(0)
            path, _, fragment = target.partition("#")
            repo_path = posixpath.normpath(posixpath.join(from_dir, path)) if path else ""
            if repo_path in self.docs:
                return f"{bang}[{label}]({self.docs[repo_path]}{'#' + fragment if fragment else ''}{title})"
            source = REPO / repo_path
            if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
                copy = Path("_repo") / repo_path
                (self.out / copy).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, self.out / copy)
                return f"{bang}[{label}]({copy.as_posix()}{title})"
            return label if not bang else f"*{label}*"

        return LINK.sub(one, text)


def join(value):
    return "".join(value) if isinstance(value, list) else value


def prepare_notebook(site, executed: Path, name, mode, plotly_pages, thumbs):
    nb = json.loads(executed.read_text(encoding="utf-8"))
    stem = name[:-len(".ipynb")]
    cells, skip = [], 0
    for cell in nb["cells"]:
        if skip:
            skip -= 1
            continue
        if "classroom-solution" in cell.get("metadata", {}):
            skip = 1                                          # the solution and the repeated check after it
            continue
        cells.append(cell)
    pictures = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            text = site.rewrite_links(join(cell["source"]), "notebooks")
            # nbsphinx goes through reStructuredText, which cannot nest code inside bold: **the `Trainer`** would show
            # its backticks. Inside bold, code is shown as bold text.
            cell["source"] = re.sub(r"\*\*([^*\n]*`[^*\n]*)\*\*", lambda m: "**" + m.group(1).replace("`", "") + "**", text)
            continue
        if cell["cell_type"] != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            html = join(data.get("text/html", ""))
            if "probeAddresses(" in html:
                continue                                      # the kernel's start-up script: probes local ports
            if "plotly.js v" in html and len(html) > 500_000:
                bundle = Path(site.out, "_static", "plotly.min.js")
                if not bundle.exists():
                    m = re.search(r"<script>(/\*\*\s*\n\* plotly\.js v.*?)</script><script>window\.define=window\.__amd", html, re.S)
                    if not m:
                        fail(f"{name}: found plotly.js inlined but not in the expected form; update prepare.py")
                    bundle.write_text(m.group(1), encoding="utf-8")
                continue                                      # served once from _static/plotly.min.js
            if "renderPlotly_" in html:
                plotly_pages.add(stem)
            if "image/gif" in data:
                media = Path("_static", "media", f"{stem}-{index}-{len(kept)}.gif")
                (site.out / media).parent.mkdir(parents=True, exist_ok=True)
                (site.out / media).write_bytes(base64.b64decode(join(data["image/gif"])))
                output["data"] = {"text/html": f'<img src="{media.as_posix()}" alt="animation from {stem}" class="course-gif">'}
                output.get("metadata", {}).pop("image/gif", None)
                pictures.append(("gif", media))
            elif "image/png" in data:
                pictures.append(("png", join(data["image/png"])))
            kept.append(output)
        cell["outputs"] = kept
    if mode == "quick":
        cells.insert(1, {"cell_type": "markdown", "id": "quick-mode-note", "metadata": {}, "source":
                         "**Quick mode.** This page shows a quick-mode run (`DIFFUSION_QUICK=1`): small training and "
                         "sample sizes, so numbers and pictures that depend on them are rougher than in the course settings."})
    seen = set()
    for k, cell in enumerate(cells):                          # nbformat 4.5 wants a unique id on every cell
        if not cell.get("id") or cell["id"] in seen:
            cell["id"] = f"cell-{k}"
        seen.add(cell["id"])
    nb["cells"] = cells
    nb["metadata"].setdefault("language_info", {})["pygments_lexer"] = "csharp"
    (site.out / name).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    # The picture the lesson ends with: its last image (the animation, if it is the last one).
    if pictures:
        kind, value = pictures[-1]
        thumb = Path("_static", "thumbs", f"{stem}.{kind}")
        (site.out / thumb).parent.mkdir(parents=True, exist_ok=True)
        if kind == "gif":
            shutil.copyfile(site.out / value, site.out / thumb)
        else:
            (site.out / thumb).write_bytes(base64.b64decode(value))
        thumbs[stem] = thumb.as_posix()


def syllabus_rows():
    """The syllabus table of README.md: (notebook file, what you learn, minutes, what it ends with)."""
    rows = []
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| \[([0-9][^\]]*)\]\(notebooks/([^)]+\.ipynb)\) \| (.*?) \| (.*?) \| (.*?) \|$", line)
        if m:
            rows.append((m.group(2), m.group(3), m.group(4), m.group(5)))
    return rows


def landing_page(site, notebooks, thumbs, mode):
    rows = {r[0]: r for r in syllabus_rows()}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n\n")[1]                           # the paragraph after the title
    lines = ["# Diffusion models in C#", "", site.rewrite_links(intro, ""), "",
             "This site is the course with every notebook executed"
             + (" in quick mode (`DIFFUSION_QUICK=1`: small settings, rougher pictures)" if mode == "quick" else "")
             + ": charts you can zoom, the pictures and the animation, the math typeset. Run it yourself with the "
               "repository's README.", "", "## The syllabus", "",
             '<table class="syllabus"><thead><tr><th>lesson</th><th>what you learn</th>'
             "<th>minutes (course / quick)</th><th>it ends with</th></tr></thead><tbody>"]
    for nb in notebooks:
        stem = nb[:-len(".ipynb")]
        _, learn, minutes, ends = rows.get(nb, (nb, "", "", ""))
        picture = f'<br><img src="{thumbs[stem]}" alt="{ends}" style="max-width:220px;max-height:160px">' if stem in thumbs else ""
        lines.append(f'<tr><td><a href="{stem}.html">{stem}</a></td><td>{md_inline(learn)}</td><td>{minutes}</td>'
                     f"<td>{md_inline(ends)}{picture}</td></tr>")
    lines += ["</tbody></table>", "",
              "```{toctree}", ":caption: The course", ":maxdepth: 1", ":hidden:", ""]
    lines += [nb[:-len(".ipynb")] for nb in notebooks]
    lines += ["```", "", "```{toctree}", ":caption: Reference", ":maxdepth: 1", ":hidden:", ""]
    lines += [name for repo_path, name, _ in PAGES if repo_path in site.docs]
    lines += ["```", "", "## Reference pages", ""]
    lines += [f"- [{title}]({name}.md)" for repo_path, name, title in PAGES if repo_path in site.docs]
    (site.out / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def md_inline(text):
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    return text.replace("│", "|")


def copy_mathjax(static: Path):
    if not (MATHJAX / "MathJax.js").exists():
        fail("MathJax is missing: sudo apt-get install -y libjs-mathjax")
    target = static / "mathjax"
    for part in ["MathJax.js", "config/TeX-AMS_SVG.js", "jax/input/TeX", "jax/element", "jax/output/SVG/jax.js",
                 "jax/output/SVG/config.js", "jax/output/SVG/autoload", "jax/output/SVG/fonts/TeX", "extensions"]:
        source = MATHJAX / part
        if source.is_dir():
            shutil.copytree(source, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / part)
    # Only the web fonts' path data of the SVG output: drop the other output jaxes' extensions and unpacked sources.
    for heavy in ["extensions/HTML-CSS", "extensions/a11y"]:
        shutil.rmtree(target / heavy, ignore_errors=True)


def fix_debian_furo(static: Path):
    """Debian's furo ships its sources unbundled: furo.css imports /javascript/normalize.css/normalize.css (an absolute
    path that exists only on a Debian web server) and furo.js is an ES module importing gumshoe, which browsers refuse
    to load from file://. Files of the same name in _static replace the theme's: one stylesheet with normalize.css
    inlined, one classic script with gumshoe first."""
    import furo
    theme = Path(furo.__file__).parent / "theme" / "furo" / "static"
    css = (theme / "styles" / "furo.css").read_text(encoding="utf-8")
    normalize = Path("/usr/share/javascript/normalize.css/normalize.css")
    marker = "@import url(/javascript/normalize.css/normalize.css);"
    if marker in css:
        if not normalize.exists():
            fail("furo needs normalize.css: sudo apt-get install -y node-normalize.css")
        css = css.replace(marker, normalize.read_text(encoding="utf-8"))
    (static / "styles").mkdir(parents=True, exist_ok=True)
    (static / "styles" / "furo.css").write_text(css, encoding="utf-8")
    js = (theme / "scripts" / "furo.js").read_text(encoding="utf-8")
    if js.startswith("import Gumshoe"):
        gumshoe = (theme / "scripts" / "gumshoe-patched.js").read_text(encoding="utf-8")
        js = gumshoe + "\n" + js.split("\n", 1)[1]
    (static / "scripts").mkdir(parents=True, exist_ok=True)
    (static / "scripts" / "furo.js").write_text(js, encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", required=True, help="folder of executed notebooks")
    parser.add_argument("--out", required=True, help="the Sphinx source folder to write (replaced)")
    parser.add_argument("--mode", choices=["course", "quick"], required=True)
    args = parser.parse_args()
    executed, out = Path(args.executed), Path(args.out)
    notebooks = sorted(p.name for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
    missing = [n for n in notebooks if not (executed / n).exists()]
    if missing:
        fail(f"no executed copy of {', '.join(missing)} in {executed}: run the build without --reuse, "
             "or run the notebook tests first (they write artifacts/notebooks/)")
    if out.exists():
        shutil.rmtree(out)
    (out / "_static").mkdir(parents=True)
    site = Site(out, notebooks)
    plotly_pages, thumbs = set(), {}
    for nb in notebooks:
        prepare_notebook(site, executed / nb, nb, args.mode, plotly_pages, thumbs)
    if plotly_pages and not (out / "_static" / "plotly.min.js").exists():
        fail("the notebooks draw Plotly charts but none carries plotly.js (Course.Setup inlines it)")
    images = REPO / "notebooks" / "images"
    if images.is_dir():
        shutil.copytree(images, out / "images")
    for repo_path, name, _ in PAGES:
        source = REPO / repo_path
        if source.exists():
            text = site.rewrite_links(source.read_text(encoding="utf-8"), posixpath.dirname(repo_path))
            (out / (name + ".md")).write_text(text, encoding="utf-8")
    landing_page(site, notebooks, thumbs, args.mode)
    (out / "_plotly_pages.json").write_text(json.dumps(sorted(plotly_pages)), encoding="utf-8")
    shutil.copyfile(Path(__file__).with_name("conf.py"), out / "conf.py")
    shutil.copyfile(Path(__file__).with_name("course.css"), out / "_static" / "course.css")
    copy_mathjax(out / "_static")
    fix_debian_furo(out / "_static")
    print(f"prepared {len(notebooks)} notebooks ({len(plotly_pages)} with charts, {len(thumbs)} with pictures) "
          f"and {sum(1 for r, _, _ in PAGES if r in site.docs)} pages in {out}")


if __name__ == "__main__":
    main()
