#!/usr/bin/env bash
# libckpt.so exports exactly the functions declared CKPT_API in ckpt.h, and the version script
# lists the same names: nothing internal leaks (fmt, nlohmann, ckpt::image, ...).
# Usage: exported_symbols.sh LIBCKPT_SO CKPT_H LIBCKPT_MAP
set -euo pipefail
lib=$1 header=$2 map=$3
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep -v '^CKPT_0$' | sort -u)
declared=$(grep -E '^CKPT_API ' "$header" | grep -oE '\bckpt_[a-z_]+\(' | tr -d '(' | sort -u)
listed=$(sed -n '/global:/,/local:/p' "$map" | grep -oE '^\s+ckpt_[a-z_]+;' | tr -d ' ;' | sort -u)
status=0
if [ "$exported" != "$declared" ]; then
  echo "exported but not declared:"; comm -23 <(echo "$exported") <(echo "$declared")
  echo "declared but not exported:"; comm -13 <(echo "$exported") <(echo "$declared")
  status=1
fi
if [ "$listed" != "$declared" ]; then
  echo "version script and header differ:"; diff <(echo "$listed") <(echo "$declared") || true
  status=1
fi
[ -n "$declared" ] || { echo "no CKPT_API declaration found in $header"; status=1; }
[ $status = 0 ] && echo "exported symbols: $(echo "$declared" | wc -l) functions, all public"
exit $status
