#!/usr/bin/env bash
# Writes the kept seed corpus of the fuzzers (fuzz/corpus/fuzz_*/) from real images: a dump of
# a sleeping process, plain and compressed, by the ckpt built in ${BUILD_DIR:-build}. Run it
# again when the image format changes; the fuzzers then start from inputs that decode.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${BUILD_DIR:-build}/bin/ckpt
out=fuzz/corpus
tmp=$(mktemp -d /tmp/ckpt-corpus.XXXXXX)
# A clean environment: the image holds it (and the seeds are kept in the repository).
cd /
env -i /bin/sleep 600 </dev/null >/dev/null 2>&1 &
cd - >/dev/null
target=$!
trap 'kill $target 2>/dev/null || true; rm -rf "$tmp"' EXIT
sleep 0.2
"$ckpt" dump -t $target -D "$tmp/plain" --leave-running >/dev/null
"$ckpt" dump -t $target -D "$tmp/packed" --leave-running --compress >/dev/null
gen() { "$ckpt" show --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generations"][0]["path"])'; }
plain=$(gen "$tmp/plain")
packed=$(gen "$tmp/packed")
mkdir -p $out/fuzz_image $out/fuzz_restore $out/fuzz_manifest $out/fuzz_section
python3 - "$ckpt" "$plain" "$packed" "$out" <<'PY'
import json, subprocess, sys
ckpt, plain, packed, out = sys.argv[1:]

def sections(gen):
    return json.loads(subprocess.check_output([ckpt, "show", "--json", gen]))["sections"]

def stored(gen, s):
    with open(f"{gen}/{s['file']}", "rb") as f:
        f.seek(s["offset"])
        return f.read(s["stored_size"])

def write(target, name, data):
    with open(f"{out}/{target}/{name}", "wb") as f:
        f.write(data)

proc = next(s for s in sections(plain) if s["name"] == "process.cbor")
image = stored(plain, proc)
for target in ("fuzz_image", "fuzz_restore"):
    # An even first byte: the input is the image itself (fuzz_image.cpp); odd: edits of the
    # built-in sample, here none and a few.
    if image[0] % 2 == 0:
        write(target, "real-process-image", image)
    write(target, "sample", b"\x01")
    write(target, "sample-edited", b"\x01\x00\x10\x00\x00\x40\xff\x01\x00\x07")
# The manifest fuzzer frames an odd-first-byte input's rest with a valid header (40 bytes).
for gen, name in ((plain, "manifest-plain"), (packed, "manifest-compressed")):
    with open(f"{gen}/manifest", "rb") as f:
        write("fuzz_manifest", name, b"\x01" + f.read()[40:])
# The section fuzzer: first byte even = stored as is; odd = zstd with raw size (byte >> 1) * 1000.
write("fuzz_section", "process-plain", b"\x00" + image)
zst = subprocess.run(["zstd", "-q", "-c"], input=bytes(range(250)) * 20, capture_output=True,
                     check=True).stdout
write("fuzz_section", "zstd-5000", bytes([(5 << 1) | 1]) + zst)
PY
ls -l $out/*/
