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
# With models to hand (SFUMATO_MODELS_DIR, or the shared folder beside the clone as in the README's quick
# start), paint the built-in target styles and train the style judge now, about 8 s, so that the first image
# of the first run does not pay for them (what 'sfumato config prepare' does; it never fails the install).
MODELS=${SFUMATO_MODELS_DIR:-}
[ -n "$MODELS" ] || { [ -d ../shared/models ] && MODELS=../shared/models; } || true
if [ -n "$MODELS" ] && [ -d "$MODELS" ]; then
  SFUMATO_MODELS_DIR="$MODELS" OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} .venv/bin/sfumato config prepare || true
fi
