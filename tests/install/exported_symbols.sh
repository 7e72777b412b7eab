#!/usr/bin/env bash
# libckpt.so exports exactly the functions declared CKPT_API in the public headers, and the
# version script lists the same names: nothing internal leaks (fmt, nlohmann, ckpt::image, ...).
# Usage: exported_symbols.sh LIBCKPT_SO LIBCKPT_MAP HEADER...
set -euo pipefail
lib=$1 map=$2
shift 2
headers=("$@")
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep -v '^CKPT_0$' | sort -u)
declared=$(cat "${headers[@]}" | grep -E '^CKPT_API ' | grep -oE '\bckpt_[a-z_]+\(' | tr -d '(' | sort -u)
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
[ -n "$declared" ] || { echo "no CKPT_API declaration found in ${headers[*]}"; status=1; }
[ $status = 0 ] && echo "exported symbols: $(echo "$declared" | wc -l) functions, all public"
exit $status
