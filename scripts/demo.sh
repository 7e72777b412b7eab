#!/usr/bin/env bash
# ckpt's main job, end to end: a program runs under `ckpt run`, is checkpointed every half
# second, is killed with SIGKILL twice from outside, and is recovered each time from its newest
# checkpoint; it finishes with the right total. Installs dependencies and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh >/dev/null
bin=${BUILD_DIR:-build}/bin
# The program gets only stdin, stdout and stderr: descriptors leaked into this shell by whatever
# started it (a pipe to a CI runner, say) would be part of the process ckpt must save.
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-" 2>/dev/null || true; fi
done
store=$(mktemp -d /tmp/ckpt-demo.XXXXXX)
trap 'rm -rf "$store"' EXIT

echo "== ckpt run --interval 0.5 -- ckpt-demo-sum 40 (adds 1..40, 0.1 s per step)"
"$bin/ckpt" run --interval 0.5 --dir "$store/store" -- "$bin/ckpt-demo-sum" 40 100 &
sup=$!
for round in 1 2; do
  sleep 1.5
  child=$(pgrep -P "$sup" -x ckpt-demo-sum || true)
  if [ -n "$child" ]; then
    echo "== demo: killing the program (pid $child) with SIGKILL"
    kill -KILL "$child"
  fi
done
status=0
wait "$sup" || status=$?
echo "== demo: ckpt run exited with $status"
exit $status
