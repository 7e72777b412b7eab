#!/usr/bin/env bash
# Fuzzes ckpt's readers of untrusted bytes (fuzz/fuzz_*.cpp: the process image decoder, a
# dry-run restore reading an image through a store, the manifest and section readers, the page
# index decoder) with libFuzzer, each for FUZZ_SECONDS (default 600: the full run; CI runs 60).
# Each fuzzer starts
# from the kept seeds in fuzz/corpus/NAME (fuzz/make_corpus.sh) and what earlier runs found in
# BUILD_DIR/corpus/NAME; with FUZZ_MERGE=1 the inputs that add coverage are merged into the
# kept seeds. A crash, hang (-timeout) or runaway allocation fails the script and leaves the
# input in BUILD_DIR/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-600}
build=${BUILD_DIR:-build-fuzz}
BUILD_DIR=$build BUILD_TYPE=Debug CC=clang-14 CXX=clang++-14 bash scripts/build.sh \
  -DCKPT_FUZZ=ON -DCKPT_BUILD_TESTS=OFF -DCKPT_BUILD_BENCH=OFF
mkdir -p "$build/artifacts"
ran=0
for f in "$build"/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  work="$build/corpus/$name"
  seeds="fuzz/corpus/$name"
  mkdir -p "$work"
  [ -d "$seeds" ] || { echo "no kept corpus $seeds (fuzz/make_corpus.sh)"; exit 1; }
  echo "== $name: ${secs}s from $(ls "$seeds" | wc -l) kept seeds and $(ls "$work" | wc -l) found before"
  "$f" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$name-" "$work" "$seeds"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then "$f" -merge=1 "$seeds" "$work"; fi
  ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "no fuzzer was built in $build/fuzz"; exit 1; }
