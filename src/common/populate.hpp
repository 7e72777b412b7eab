#pragma once
// Fresh memory can be slow to touch for the first time: on a VM, each page's first access from
// user space may cost an exit to the host (measured here: 8 MiB took 11-22 ms to memset once,
// 0.3 ms the second time), even after the kernel populated it. Huge pages cut those exits 512-fold,
// so big arrays that a restore builds before the program may run ask for them, then populate.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ckpt {

// Backs the whole pages inside [p, p + len) now (huge pages where the range holds aligned 2 MiB).
// Small ranges are left alone: not worth the calls.
inline void populate(void* p, size_t len) {
  constexpr uintptr_t kPage = 4096;
  auto at = reinterpret_cast<uintptr_t>(p);
  uintptr_t start = (at + kPage - 1) & ~(kPage - 1), end = (at + len) & ~(kPage - 1);
  if (end < start + 16 * kPage) return;
  (void)::madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
  (void)::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_WRITE);
}

// v.reserve(n), with the room backed at once.
template <class T>
void reserve_populated(std::vector<T>& v, size_t n) {
  v.reserve(n);
  populate(v.data() + v.size(), (v.capacity() - v.size()) * sizeof(T));
}

}  // namespace ckpt
