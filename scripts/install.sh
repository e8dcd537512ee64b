#!/usr/bin/env bash
# Install Sfumato and everything it needs into ./.venv (idempotent).
# torch is pinned and installed FIRST from the local CPU wheel, so pip never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet -e ".[all,cluster,test]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import torch, sfumato; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('sfumato', sfumato.__version__, '| torch', torch.__version__)"
