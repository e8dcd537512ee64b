#!/usr/bin/env bash
# Installs what the web-server tests need (tests/test_server_*.py):
#   * Debian's chromium (the headless browser of tests/test_server_browser.py; Playwright's own browser
#     download is not used: the tests launch /usr/bin/chromium through executable_path);
#   * the Python packages of the [web] extra (fastapi, uvicorn, python-multipart), httpx and playwright,
#     installed into the interpreter's environment only when missing.
# Usage: bash .ci/install-web.sh   (PYTHON=path/to/python to pick the interpreter; default: python)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "install-web: installing chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
chromium --version 2>/dev/null | sed -n 1p

PY="${PYTHON:-python}"
if ! "$PY" -c "import fastapi, uvicorn, multipart, httpx" >/dev/null 2>&1; then
  echo "install-web: installing fastapi, uvicorn, python-multipart, httpx"
  "$PY" -m pip install --quiet "fastapi>=0.110" "uvicorn>=0.29" "python-multipart>=0.0.9" "httpx>=0.27"
fi
if ! "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; then
  echo "install-web: installing playwright (Python package only; the browser is Debian's chromium)"
  "$PY" -m pip install --quiet "playwright>=1.45"
fi
"$PY" -c "import playwright, fastapi; from importlib.metadata import version; print('playwright', version('playwright'), '/ fastapi', fastapi.__version__)"
