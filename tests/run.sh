#!/usr/bin/env bash
# Set up a fresh Debian machine for the test suite and run it: the README's test command.
# Installs the Debian packages the lab and the PostgreSQL tests need (when root and missing),
# the package with its test extras, then runs lint, types and pytest in random order.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(iproute2 iptables postgresql libpcap0.8 chromium)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
ruff check probe analysis tests benchmarks
ruff format --check probe analysis tests benchmarks
mypy
# Random order (pytest-randomly, seed printed in the header; rerun one with -p randomly
# --randomly-seed=N) so a test that depends on another's leftovers cannot pass by luck.
python3 -m pytest -q -p no:cacheprovider -p randomly "$@"
