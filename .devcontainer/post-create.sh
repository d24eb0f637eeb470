#!/usr/bin/env bash
# Runs once when the container is created: installs Jupyter, restores the pinned notebook kernel (dotnet-interactive
# 1.0.712001, a local tool in dotnet-tools.json) and registers it with Jupyter as ".NET (C#)", then builds the library,
# the CLI and the notebooks' runtime, so that notebooks/00-setup.ipynb runs straight away in VS Code's Jupyter extension.
# TorchBackend comes from the environment (cpu unless the GPU container sets cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${TorchBackend:-cpu}"

# Jupyter from Debian 12's packages: the notebook server and the kernel client VS Code's Jupyter extension uses, and
# nbconvert for the notebook tests. JupyterLab is not packaged in Debian 12 (pip install jupyterlab in a venv gives it).
echo "== installing Jupyter (Debian packages)"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  jupyter-notebook jupyter-nbconvert jupyter-client python3-ipykernel >/dev/null

# The one set of set-up steps of README, notebook 00 and TEACHERS.md, at the repository root.
echo "== registering the .NET (C#) kernel with Jupyter"
dotnet tool restore
dotnet tool run dotnet-interactive jupyter install
jupyter kernelspec list

echo "== restoring and building (TorchBackend=$backend)"
dotnet build Notebooks.sln -c Release -p:TorchBackend="$backend" -nologo -v q
echo "== ready: open notebooks/00-setup.ipynb, pick the .NET (C#) kernel, Run All"
