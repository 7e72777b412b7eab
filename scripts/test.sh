#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
# Each test binary leads a process group of its own (tests/support/test_main.cpp).
export CKPT_TEST_OWN_GROUP=1
if ! ctest --output-on-failure --timeout 600 -j2 "$@"; then
  bash ../scripts/failures.sh Testing/Temporary/LastTest.log
  exit 8
fi
# A skipped test proves nothing: it fails the run like a failed one.
skipped=$(grep -h '^\[  SKIPPED \] [A-Za-z]' Testing/Temporary/LastTest*.log 2>/dev/null | sort -u || true)
if [ -n "$skipped" ]; then
  echo "skipped tests count as failures:"
  echo "$skipped"
  exit 1
fi
