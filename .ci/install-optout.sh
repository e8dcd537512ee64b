#!/usr/bin/env bash
# Installs what the opt-out/provenance tests need (tests/test_optout_xmp.py, test_c2pa.py, test_site_kit.py):
#   * exiv2 (Debian package) -- independent reader of the embedded XMP;
#   * c2pa-python + cryptography -- Content Credentials signing (normally already pulled in by the
#     project's [c2pa] extra; installed here only if missing).
#   * nginx (Debian nginx-light) -- test_site_kit runs `nginx -t` on the generated snippet.
# Usage: bash .ci/install-optout.sh   (PYTHON=path/to/python to pick the interpreter; default: python)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

if ! command -v exiv2 >/dev/null 2>&1; then
  echo "install-optout: installing exiv2"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends exiv2
fi
exiv2 --version | sed -n 1p

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "install-optout: installing nginx-light"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light
fi

PY="${PYTHON:-python}"
if ! "$PY" -c "import c2pa, cryptography; c2pa.Context; c2pa.Builder" >/dev/null 2>&1; then
  echo "install-optout: installing c2pa-python and cryptography"
  "$PY" -m pip install --quiet "c2pa-python>=0.29" "cryptography>=42"
fi
"$PY" -c "import c2pa; print('c2pa-python ok, c2pa-rs', c2pa.sdk_version())"
