// Feeds the process image decoder (CBOR check, typed decode, validation) with bytes that it must
// refuse with one error or accept as a consistent image: never crash, hang or allocate without
// bound. When the first byte is odd, the rest of the input edits a valid sample image (each
// 3-byte group: a position and a new byte), so that the fuzzer reaches the typed decoder and the
// validation past the CBOR structure.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "image/schema/records.hpp"
#include "sample_image.hpp"

namespace {

std::vector<std::byte> mutated_sample(std::span<const uint8_t> edits) {
  static const std::vector<std::byte> sample =
      ckpt::schema::encode_image(ckpt::fuzz::sample_image());
  std::vector<std::byte> out = sample;
  for (size_t i = 0; i + 2 < edits.size(); i += 3) {
    size_t at = (size_t{edits[i]} << 8 | edits[i + 1]) % out.size();
    out[at] = static_cast<std::byte>(edits[i + 2]);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes;
  if (size > 0 && (data[0] & 1)) {
    bytes = mutated_sample({data + 1, size - 1});
  } else {
    auto* p = reinterpret_cast<const std::byte*>(data);
    bytes.assign(p, p + size);
  }
  auto image = ckpt::schema::decode_image(bytes);
  if (image.ok()) {
    // A decoded image is consistent: encoding it again and decoding gives the same image.
    auto again = ckpt::schema::decode_image(ckpt::schema::encode_image(*image));
    if (!again.ok() || ckpt::schema::encode(*again) != ckpt::schema::encode(*image))
      __builtin_trap();
  } else if (image.error().message.empty()) {
    __builtin_trap();
  }
  return 0;
}
