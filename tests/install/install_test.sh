#!/usr/bin/env bash
# cmake --install into a temporary prefix, then build and run small C and C++ programs against
# it with pkg-config and with find_package(ckpt), as another project would.
# Usage: install_test.sh BUILD_DIR THIS_DIR LIBDIR (relative, e.g. lib/x86_64-linux-gnu)
set -euo pipefail
build=$1 here=$2 rel_libdir=$3
tmp=$(mktemp -d /tmp/ckpt-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$prefix/$rel_libdir
for f in "$prefix/bin/ckpt" "$prefix/include/ckpt/ckpt.h" "$prefix/include/ckpt/ckpt.hpp" \
         "$libdir/libckpt.a" "$libdir/libckpt.so" "$libdir/pkgconfig/ckpt.pc" \
         "$libdir/cmake/ckpt/ckptConfig.cmake" "$prefix/share/man/man1/ckpt.1" \
         "$prefix/share/man/man1/ckpt-dump.1" "$prefix/share/bash-completion/completions/ckpt"; do
  [ -e "$f" ] || fail "$f is not installed"
done
"$prefix/bin/ckpt" --version | grep -q '^ckpt ' || fail "installed ckpt does not run"

# pkg-config: the .pc finds its prefix from its own place (multiarch libdir included).
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --variable=libdir ckpt)" -ef "$libdir" ] || fail "pkg-config libdir is wrong"
cc -std=c11 -Wall -Werror -pedantic-errors "$here/consumer/use_c_api.c" \
  $(pkg-config --cflags --libs ckpt) -o "$tmp/use_c_api"
c++ -std=c++20 -Wall -Werror "$here/consumer/use_cpp_api.cpp" \
  $(pkg-config --cflags --libs ckpt) -o "$tmp/use_cpp_api"
mkdir "$tmp/state1" "$tmp/state2"
LD_LIBRARY_PATH=$libdir "$tmp/use_c_api" "$tmp/state1" | grep -qx 'c api ok' || fail "pkg-config C program"
LD_LIBRARY_PATH=$libdir "$tmp/use_cpp_api" "$tmp/state2" | grep -qx 'c++ api ok' ||
  fail "pkg-config C++ program"

# find_package(ckpt): shared and static.
cmake -S "$here/consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
for prog in use_c_api use_cpp_api use_cpp_api_static; do
  mkdir "$tmp/state-$prog"
  "$tmp/consumer/$prog" "$tmp/state-$prog" | grep -q 'api ok' || fail "find_package program $prog"
done
echo "install test: ok ($prefix, libdir ${libdir#$prefix/})"
