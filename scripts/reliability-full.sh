#!/usr/bin/env bash
# The full fault-injection runs of docs/reliability.md: every kill point of the dumper (256 MiB
# multi-threaded process and a tree) and of the restorer, 60 supervisor kills, 1 000 crash/restore
# cycles, 10 000 bit flips per image kind. About an hour and a half on 2 cores; run as root.
# Extra arguments go to the test binary (e.g. --gtest_filter='DumperKilled.*').
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
CKPT_RELIABILITY_FULL=1 "${BUILD_DIR:-build}/tests/reliability/ckpt_reliability_tests" "$@"
