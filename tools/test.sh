#!/usr/bin/env bash
# Set up a fresh virtual environment from this repo's files and run every test: library/notebook sync, nbdev_test,
# the offline docs build checked in headless Chromium, and nbval over every notebook. Usage: bash tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
t0=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - t0 ))s)"; }

step "environment: $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
# pip's own output, progress included; a failed install stops the script with pip's error (pipefail). Only the
# "Location ... is ignored" notes about empty local index folders, which some machines' pip settings print, are dropped.
pip_install() { { pip install --disable-pip-version-check "$@" 2>&1; } | { grep -v "' is ignored: it is neither a file nor a directory" || true; }; }
# torch first, unless the venv has one: the release CI tests (FFF_TORCH overrides it). On Linux PyPI serves the CUDA
# build; FFF_TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU-only build from PyTorch's own index.
if python -c "import torch" 2>/dev/null; then echo "keeping the venv's torch $(python -c 'import torch; print(torch.__version__)')"
else pip_install "${FFF_TORCH:-torch==2.13.0}" ${FFF_TORCH_INDEX:+--index-url "$FFF_TORCH_INDEX"}; fi
pip_install -e ".[dev,triton,jax]"
python -c "import torch, nbdev, fff_nb; print('torch', torch.__version__, '| nbdev', nbdev.__version__, '| fff_nb', fff_nb.__version__)"

step "notebooks and library in sync (nbdev_export, nbdev_clean)"
nbdev_export
git diff --exit-code -- fff_nb || { echo "fff_nb/ is out of sync with nbs/: run nbdev_export and commit"; exit 1; }
[ -z "$(git status --porcelain --untracked-files=all -- fff_nb)" ] || { git status --short -- fff_nb; echo "nbdev_export created files not in git"; exit 1; }
nbdev_clean
git diff --exit-code -- nbs || { echo "notebooks are not clean: run nbdev_clean and commit"; exit 1; }

step "the house: module import graph (no upward import, no cycle, no fastcore.test in library code)"
python tools/import_graph.py

step "nbdev_test"
# nbdev_test reuses worker processes across notebooks: one that ran torch.compile has imported triton without its
# interpreter, which fff_nb.triton then refuses (see 04_triton). The interpreter from the start keeps them consistent.
TRITON_INTERPRET=1 nbdev_test

step "CUDA compile check: every fff_nb/csrc/*.cu with nvcc for sm_80 and sm_90 (no GPU needed)"
if command -v nvcc >/dev/null; then python tools/check_cuda.py
else echo "WARNING: nvcc not on PATH: CUDA compile check skipped"; fi

step "offline docs (_docs/, README.md) and headless-browser check"
python tools/docs_offline.py
git diff --exit-code -- README.md || { echo "README.md is out of date with nbs/index.ipynb: run python tools/docs_offline.py"; exit 1; }
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || true
  fi
fi
command -v chromium >/dev/null || { echo "Chromium is needed for the docs check: apt-get install chromium"; exit 1; }
python tools/check_docs.py _docs

step "pytest + nbval: every notebook against its stored outputs (setup and earlier checks took $(( $(date +%s) - t0 ))s)"
pytest -q nbs  # last: its closing line is the test count
