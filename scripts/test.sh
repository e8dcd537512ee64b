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
# the fast tier must run without ../shared (tiny random models only)
SFUMATO_SHARED_DIR=/nonexistent SFUMATO_MODELS_DIR=/nonexistent SFUMATO_CACHE_DIR="$(mktemp -d)" \
  .venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow"
# then the tests that need the real weights and images (the fast tier already ran; arguments select others)
[ "$#" -gt 0 ] || set -- -m slow
SFUMATO_JUDGE_CACHE_DIR="${SFUMATO_JUDGE_CACHE_DIR:-$(mktemp -d)}" .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
