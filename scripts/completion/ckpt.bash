# bash completion for ckpt(1). Installed as share/bash-completion/completions/ckpt.
# tests/cli/docs_test.sh checks that it knows every subcommand and option `ckpt --help` lists.

_ckpt_subcommands="dump restore run checkpoint status check show verify"
_ckpt_global_opts="-h --help -V --version --log -v --verbose -o --log-file"

# Options of each subcommand; those taking a value are listed again in _ckpt_value_opts.
_ckpt_opts_dump="-t --tree -D --images-dir -R --leave-running -j --shell-job --incremental --pre-copy --compress --json --trust-store --file-locks --tcp-established --tcp-close --skip-in-flight --ext-unix-sk"
_ckpt_opts_restore="-D --images-dir --generation -j --shell-job -d --detach --restore-detached --accept-changed-files --pidfile --dry-run --pid-ns --lazy --force-vdso-proxy --json --trust-store --file-locks --tcp-established --tcp-close --ext-unix-sk --inherit-fd"
_ckpt_opts_run="--dir --interval --keep --restart-on --min-uptime --max-retries --max-restarts -q --quiet --resume --accept-changed-files --compress --incremental --full-every --no-write-tracking --pre-copy --lazy"
_ckpt_opts_checkpoint="--timeout"
_ckpt_opts_status="--json"
_ckpt_opts_check="--json"
_ckpt_opts_show="--json --no-verify --trust-store --diff"
_ckpt_opts_verify="--trust-store"

_ckpt_value_opts="--log -o --log-file -t --tree -D --images-dir --generation --pidfile --inherit-fd --dir --interval --keep --restart-on --min-uptime --max-retries --max-restarts --timeout"

_ckpt() {
  local cur prev sub i
  COMPREPLY=()
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  sub=
  for ((i = 1; i < COMP_CWORD; i++)); do
    case " $_ckpt_subcommands " in
      *" ${COMP_WORDS[i]} "*) sub=${COMP_WORDS[i]}; break ;;
    esac
  done
  # After `ckpt run ... --`, the program and its arguments: complete commands and files.
  if [[ $sub == run ]]; then
    for ((i = i + 1; i < COMP_CWORD; i++)); do
      if [[ ${COMP_WORDS[i]} == -- ]]; then
        if ((i + 1 == COMP_CWORD)); then
          mapfile -t COMPREPLY < <(compgen -c -- "$cur")
        else
          mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        return 0
      fi
    done
  fi
  case " $_ckpt_value_opts " in
    *" $prev "*)
      case $prev in
        -t | --tree) mapfile -t COMPREPLY < <(compgen -W "$(ps -e -o pid= 2>/dev/null)" -- "$cur") ;;
        --log) mapfile -t COMPREPLY < <(compgen -W "debug info warn error off" -- "$cur") ;;
        --restart-on) mapfile -t COMPREPLY < <(compgen -W "any exit signal SIGSEGV SIGABRT SIGKILL" -- "$cur") ;;
        -D | --images-dir | --dir) mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
        -o | --log-file | --pidfile) mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
      esac
      return 0
      ;;
  esac
  if [[ -z $sub ]]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "$_ckpt_global_opts" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W "$_ckpt_subcommands" -- "$cur")
    fi
    return 0
  fi
  local opts_var="_ckpt_opts_$sub"
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${!opts_var} $_ckpt_global_opts" -- "$cur")
  else
    case $sub in
      show | verify | status | checkpoint) mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    esac
  fi
  return 0
}
complete -F _ckpt ckpt
