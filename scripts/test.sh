#!/usr/bin/env bash
# Run the whole test suite (real shared weights from ../shared/models; no network).
# Installs the system tools some tests need (exiv2, Debian chromium) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHON=.venv/bin/python
for s in .ci/install-optout.sh .ci/install-web.sh; do
  [ -f "$s" ] && bash "$s"
done
export SFUMATO_MODELS_DIR="${SFUMATO_MODELS_DIR:-$(cd .. && pwd)/shared/models}"
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
