#!/usr/bin/env bash
# Every subcommand `ckpt --help` lists has a man page, and every option of every subcommand (and
# of ckpt itself) is documented in its page and known to the bash completion, which also
# completes it. Lists come from --help, so adding an option without documenting it fails here.
# Usage: docs_test.sh CKPT MAN_SRC_DIR COMPLETION MAN_BUILD_DIR
set -u  # no pipefail: grep -q ends a pipe early, which is a success here
ckpt=$1 man=$2 completion=$3 built=$4
status=0
bad() { echo "docs: $*"; status=1; }

subcommands() { "$ckpt" --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && $1 {print $1}'; }
# Option names of `ckpt [SUB] --help`: every -x and --xyz in the OPTIONS section's first column.
options() {
  "$ckpt" "$@" --help | sed -n '/^Options:/,/^$/p' | grep -E '^\s+-' |
    awk '{print $1}' | tr ',' '\n' | grep -E '^-' | sort -u
}

subs=$(subcommands)
[ "$(wc -w <<<"$subs")" -ge 8 ] || bad "ckpt --help lists only: $subs"

# Complete what a user would type at the end of WORDS... and print the candidates.
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ckpt; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$completion" "$@"
}

check_page() {  # PAGE OPTION...
  local page=$1; shift
  [ -f "$man/$page.scd" ] || { bad "no man page docs/man/$page.scd"; return; }
  [ -f "$built/$page.1" ] || bad "man page $page.1 was not built into $built"
  for opt in "$@"; do
    grep -qF -- "*$opt*" "$man/$page.scd" || bad "$page.scd does not document $opt"
  done
}

check_page ckpt $(options)
for opt in $(options); do
  complete_words ckpt "$opt" | grep -qxF -- "$opt" || bad "completion of 'ckpt $opt' misses it"
done
for sub in $subs; do
  grep -qF -- "*$sub*" "$man/ckpt.scd" || bad "ckpt.scd does not list $sub"
  complete_words ckpt "${sub:0:2}" | grep -qxF -- "$sub" || bad "completion does not know $sub"
  opts=$(options "$sub" | grep -vxF -e -h -e --help)
  check_page "ckpt-$sub" $opts
  for opt in $opts; do
    complete_words ckpt "$sub" "$opt" | grep -qxF -- "$opt" ||
      bad "completion of 'ckpt $sub $opt' misses it"
  done
done
[ $status = 0 ] && echo "docs: $(wc -w <<<"$subs") subcommands, every option documented and completed"
exit $status
