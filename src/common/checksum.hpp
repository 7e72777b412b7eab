#pragma once
// Checksums for images: XXH3-64 (fast, streaming). One place so the algorithm can change with
// the image format version.
#include <cstddef>
#include <cstdint>
#include <span>

#include <xxhash.h>
#if defined(__x86_64__)
// Debian's libxxhash is built for any x86-64 (SSE2); its _dispatch entry points pick AVX2 or
// AVX-512 at run time: a 4 KiB page hashes 3x faster here (docs/benchmarks.md, 2026-12-02, stop
// 37). The header renames the XXH3 calls below to them.
#include <xxh_x86dispatch.h>
#endif

namespace ckpt {

inline uint64_t checksum64(std::span<const std::byte> data) {
  return XXH3_64bits(data.data(), data.size());
}

// The hash of one page in a page index (page_index.hpp).
inline uint64_t page_hash(const void* page, size_t len) {
  return XXH3_64bits(page, len);
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
