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
log=$store/log
trap 'rm -rf "$store"' EXIT
fail() {
  echo "== demo FAILED: $*"
  exit 1
}

n=40
echo "== ckpt run --interval 0.5 -- ckpt-demo-sum $n (adds 1..$n, 0.1 s per step)"
# Everything goes to a file (O_APPEND: the restored program writes at its end) that is shown as
# it grows and checked at the end.
: >"$log"
"$bin/ckpt" run --interval 0.5 --dir "$store/store" -- "$bin/ckpt-demo-sum" $n 100 >>"$log" 2>&1 &
sup=$!
tail -n +1 -f --pid="$sup" "$log" &
shower=$!
kills=0
for round in 1 2; do
  sleep 1.5
  child=$(pgrep -P "$sup" -x ckpt-demo-sum || true)
  [ -n "$child" ] || fail "round $round: the program is not running under ckpt run (pid $sup)"
  echo "== demo: killing the program (pid $child) with SIGKILL"
  kill -KILL "$child"
  # The kill happened when the supervisor saw that pid die and brought the program back.
  for _ in $(seq 100); do
    [ "$(grep -c 'crash: killed by SIGKILL' "$log")" -ge $((kills + 1)) ] && break
    sleep 0.1
  done
  kills=$((kills + 1))
  [ "$(grep -c 'crash: killed by SIGKILL' "$log")" -ge "$kills" ] ||
    fail "round $round: ckpt run did not see pid $child killed by SIGKILL"
done
status=0
wait "$sup" || status=$?
wait "$shower" 2>/dev/null || true
echo "== demo: ckpt run exited with $status"
[ "$status" -eq 0 ] || fail "ckpt run exited with $status"
want=$((n * (n + 1) / 2))
grep -qx "total $want (expected $want)" "$log" ||
  fail "the program did not print the right total $want: $(grep '^total' "$log" || echo 'no total line')"
crashes=$(grep -c 'crash: killed by SIGKILL' "$log" || true)
recovered=$(grep -c 'recovered from generation' "$log" || true)
[ "$crashes" -eq 2 ] || fail "$crashes crashes by SIGKILL seen, want 2"
[ "$recovered" -eq 2 ] || fail "$recovered recoveries from a checkpoint, want 2 (one per kill)"
! grep -q 'recovered from a fresh start\|skipping generation' "$log" ||
  fail "a recovery did not come from the newest checkpoint: $(grep 'fresh start\|skipping' "$log")"
# A restart from scratch would print the first step again.
[ "$(grep -c '^step 1 sum 1$' "$log")" -eq 1 ] || fail "the program started again from step 1"
echo "== demo: OK (killed twice, recovered twice from checkpoints, total $want)"
