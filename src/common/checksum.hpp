#pragma once
// Checksums for images: XXH3-64 (fast, streaming). One place so the algorithm can change with
// the image format version.
#include <cstddef>
#include <cstdint>
#include <span>

#include <xxhash.h>

namespace ckpt {

inline uint64_t checksum64(std::span<const std::byte> data) {
  return XXH3_64bits(data.data(), data.size());
}

// Streaming form for sections written or read in pieces.
class Checksum64 {
 public:
  Checksum64() : state_(XXH3_createState()) { XXH3_64bits_reset(state_); }
  ~Checksum64() { XXH3_freeState(state_); }
  Checksum64(const Checksum64&) = delete;
  Checksum64& operator=(const Checksum64&) = delete;
  void update(std::span<const std::byte> data) {
    XXH3_64bits_update(state_, data.data(), data.size());
  }
  uint64_t digest() const { return XXH3_64bits_digest(state_); }
  void reset() { XXH3_64bits_reset(state_); }

 private:
  XXH3_state_t* state_;
};

}  // namespace ckpt
