#!/usr/bin/env bash
# Repeats, at the end of a test run's output, where each failed test failed: a CI summary shows
# only the end of a long output, and a failure seen once on a loaded machine must be readable
# from it. Usage: scripts/failures.sh BUILD_DIR/Testing/Temporary/LastTest.log
log=${1:?usage: failures.sh LastTest.log}
[ -f "$log" ] || exit 0
awk '
  / Testing: / { name = $0; sub(/^[0-9]+\/[0-9]+ Testing: /, "", name); n = 0; next }
  /^Test Failed\./ {
    print "== failed: " name
    for (i = 0; i < n && i < 40; i++) print "   " lines[i]
    next
  }
  /: Failure$/ { keep = 8 }
  keep > 0 { lines[n++] = substr($0, 1, 300); keep-- }
' "$log"
