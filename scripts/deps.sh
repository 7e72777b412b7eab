#!/usr/bin/env bash
# Installs what ckpt needs to build and test on Debian 12. Idempotent. As root it runs apt-get
# itself (a fresh Debian has no sudo); otherwise through sudo.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git clang-14 libclang-rt-14-dev clang-format
      libcli11-dev libfmt-dev libzstd-dev libxxhash-dev nlohmann-json3-dev
      libbpf-dev  # VmFlags read by a BPF iterator, not a page-table walk (src/proc/vma_iter.hpp)
      libgtest-dev libgmock-dev libbenchmark-dev
      python3 perl sqlite3 procps util-linux e2fsprogs coreutils
      scdoc dpkg-dev bash-completion
      nftables libnftables-dev  # the network lock of dumped TCP connections (docs/engine.md)
      nginx-light memcached socat postgresql redis-server tmux  # real servers the e2e tests dump and restore
      iputils-ping  # a raw ICMP socket with a BPF filter and a receive timeout (e2e)
      openjdk-17-jdk-headless  # a JVM (its source launcher compiles the e2e test's program)
      nodejs)  # Node.js with a forked child on an IPC channel (e2e ServerTest)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: run as root to install ${missing[*]}" >&2; exit 1; }
    as_root=(sudo)
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
