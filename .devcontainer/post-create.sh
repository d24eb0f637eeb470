#!/usr/bin/env bash
# Runs once when the container is created: restores NuGet packages and the notebook tool, builds the library,
# the CLI and the notebooks' runtime. TorchBackend comes from the environment (cpu unless the GPU container sets cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${TorchBackend:-cpu}"
echo "== restoring and building (TorchBackend=$backend)"
dotnet tool restore
dotnet build Notebooks.sln -c Release -p:TorchBackend="$backend" -nologo -v q
echo "== ready: open notebooks/00-setup.ipynb and Run All"
