#!/usr/bin/env bash
# Install soundcheck with its test dependencies into .venv and run the whole test suite.
# `.[test]` = `.[all]` (api, worker, embedded Redis) + the test tools and reference packages.
# Works on a fresh machine: Python 3.11 + pip; as root it also installs Debian's chromium for browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
# OpenL3 reference (its resampy<0.3 pin conflicts with the test extra; what it imports is in the extra).
.venv/bin/python -m pip install --quiet --no-deps torchopenl3==1.0.1
# LAION-CLAP reference: laion_clap 1.1.7 pins numpy<2 (and wandb); what its modules import is in the test extra.
.venv/bin/python -m pip install --quiet --no-deps laion_clap==1.1.7
# Debian's chromium drives the dashboard tests; espeak-ng speaks the sentence the YAMNet speech test classifies.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's ${missing[*]} for the browser and speech tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "could not install ${missing[*]}: the tests that need them will be skipped"
fi
.venv/bin/ruff check soundcheck app worker tests benchmarks
exec .venv/bin/python -m pytest --durations=25 "$@"
