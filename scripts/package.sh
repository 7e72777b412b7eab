#!/usr/bin/env bash
# Builds the Debian package ckpt_VERSION_ARCH.deb with CPack in ${BUILD_DIR:-build}, then checks
# it: metadata, file list, and that apt would install it (a dry run, nothing is installed).
#   bash scripts/package.sh               deps, build, package, check
#   bash scripts/package.sh --check-only  package an already built tree into a temporary folder
#                                         and check it (the deb_package test)
# Install it with: apt install ./build/ckpt_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${BUILD_DIR:-build}")
out=$build
if [ "${1:-}" = --check-only ]; then
  out=$(mktemp -d /tmp/ckpt-deb-test.XXXXXX)
  trap 'rm -rf "$out"' EXIT
else
  bash scripts/deps.sh
  bash scripts/build.sh >/dev/null
fi
fail() { echo "package: $*" >&2; exit 1; }

(cd "$build" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) || { cat "$out/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$out"/ckpt_*.deb)
info=$(dpkg-deb --info "$deb")
grep -q '^ Package: ckpt$' <<<"$info" || fail "no 'Package: ckpt' in $deb"
depends=$(grep '^ Depends:' <<<"$info") || fail "no Depends: in $deb"
for lib in libc6 libstdc++6 libzstd1 libxxhash0 libfmt9; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
size_kib=$(grep '^ Installed-Size:' <<<"$info" | awk '{print $2}')
[ "$size_kib" -lt 51200 ] || fail "Installed-Size $size_kib KiB: are the files stripped?"
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for f in ./usr/bin/ckpt ./usr/include/ckpt/ckpt.h ./usr/include/ckpt/ckpt.hpp \
         "./usr/lib/$arch/libckpt.a" "./usr/lib/$arch/libckpt.so" "./usr/lib/$arch/pkgconfig/ckpt.pc" \
         "./usr/lib/$arch/cmake/ckpt/ckptConfig.cmake" ./usr/share/bash-completion/completions/ckpt \
         ./usr/share/man/man1/ckpt.1; do
  grep -qxF "$f" <<<"$files" || fail "$f is missing from $deb"
done
for sub in $("$build/bin/ckpt" --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && $1 {print $1}'); do
  grep -qxF "./usr/share/man/man1/ckpt-$sub.1" <<<"$files" || fail "no man page for $sub in $deb"
done
if grep -v -e '^\./usr/' -e '^\./$' <<<"$files" | grep -q .; then fail "files outside /usr in $deb"; fi
# The package's own ckpt runs with the package's own library.
x=$(mktemp -d /tmp/ckpt-deb-x.XXXXXX)
dpkg-deb -x "$deb" "$x"
LD_LIBRARY_PATH=$x/usr/lib/$arch "$x/usr/bin/ckpt" --version >/dev/null || { rm -rf "$x"; fail "packaged ckpt does not run"; }
rm -rf "$x"
# apt's dry run resolves the dependencies against this system without installing anything.
apt-get install --simulate --no-download "$deb" >"$out/apt.log" 2>&1 ||
  { cat "$out/apt.log" >&2; fail "apt would not install $deb"; }
grep -q -e '^Inst ckpt ' -e 'ckpt is already the newest' "$out/apt.log" ||
  { cat "$out/apt.log" >&2; fail "apt dry run did not plan to install ckpt"; }
echo "package: $deb ok ($(wc -l <<<"$files") entries)"
