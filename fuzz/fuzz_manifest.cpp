// Feeds arbitrary bytes to the manifest decoder: it must return an error or a consistent
// generation, never crash, hang or allocate without bound. When the first byte is odd, the rest
// is taken as the JSON body and given a valid header, so that the fuzzer reaches the body parser
// past the checksums.
#include <cstddef>
#include <cstdint>
#include <span>

#include <cstring>
#include <vector>

#include "common/checksum.hpp"
#include "image/format.hpp"

namespace {

void put64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

std::vector<std::byte> with_header(std::span<const std::byte> body) {
  using namespace ckpt::image::format;
  std::vector<std::byte> out(kManifestHeaderSize);
  std::memcpy(out.data(), kManifestMagic, 8);
  out[8] = std::byte{static_cast<uint8_t>(kVersion)};
  put64(out.data() + 16, body.size());
  put64(out.data() + 24, ckpt::checksum64(body));
  put64(out.data() + 32, ckpt::checksum64(std::span(out).first(32)));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto input = std::span(reinterpret_cast<const std::byte*>(data), size);
  std::vector<std::byte> framed;
  if (size > 0 && (data[0] & 1)) framed = with_header(input.subspan(1));
  auto bytes = framed.empty() ? input : std::span<const std::byte>(framed);
  auto gen = ckpt::image::format::decode_manifest(bytes, "fuzz/manifest");
  if (gen.ok()) {
    // Whatever decodes must encode and decode again to the same sections.
    auto again = ckpt::image::format::decode_manifest(ckpt::image::format::encode_manifest(*gen),
                                                      "fuzz/again");
    if (!again.ok() || again->sections.size() != gen->sections.size()) __builtin_trap();
  }
  return 0;
}
