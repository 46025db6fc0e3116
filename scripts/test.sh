#!/usr/bin/env bash
# Install soundcheck with its test dependencies into .venv and run the whole test suite.
# Works on a fresh machine: Python 3.11 + pip; as root it also installs Debian's chromium for browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: browser tests will be skipped"
fi
.venv/bin/ruff check soundcheck app worker tests benchmarks
exec .venv/bin/python -m pytest "$@"
