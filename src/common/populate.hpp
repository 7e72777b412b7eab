#pragma once
// Fresh memory can be slow to touch for the first time: on a VM, each page's first access from
// user space may cost an exit to the host (measured here: 8 MiB took 11-22 ms to memset once,
// 0.3 ms the second time), even after the kernel populated it (16 MiB: populate 2 ms, then the
// first memcpy into it 19 ms, the second 1 ms). Huge pages cut those exits 512-fold (the same
// 16 MiB in huge pages: populate 1.2 ms, first memcpy 0.9 ms), but an anonymous mapping gets
// them only on its 2 MiB-aligned parts, and malloc's big chunks are not aligned: big buffers that
// are filled at once come from HugeBuffer or HugeVector.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
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
template <class T, class A>
void reserve_populated(std::vector<T, A>& v, size_t n) {
  v.reserve(n);
  populate(v.data() + v.size(), (v.capacity() - v.size()) * sizeof(T));
}

namespace huge {

inline constexpr size_t kHugePage = size_t{2} << 20;

inline size_t rounded(size_t bytes) {
  return (bytes + kHugePage - 1) & ~(kHugePage - 1);
}

// A mapping of `bytes` (rounded up to whole huge pages) that starts on a huge page, or null.
inline void* map_aligned(size_t bytes) {
  size_t len = rounded(bytes);
  void* raw =
      ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto at = reinterpret_cast<uintptr_t>(raw);
  uintptr_t start = (at + kHugePage - 1) & ~(kHugePage - 1);
  if (start > at) ::munmap(raw, start - at);
  if (uintptr_t tail = at + kHugePage - start; tail > 0)
    ::munmap(reinterpret_cast<void*>(start + len), tail);
  (void)::madvise(reinterpret_cast<void*>(start), len, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(start);
}

inline void unmap_aligned(void* p, size_t bytes) {
  ::munmap(p, rounded(bytes));
}

}  // namespace huge

// std::allocator, but allocations of a huge page or more start on a huge page.
template <class T>
struct HugeAllocator {
  using value_type = T;
  HugeAllocator() = default;
  template <class U>
  HugeAllocator(const HugeAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n * sizeof(T) < huge::kHugePage) return std::allocator<T>{}.allocate(n);
    void* p = huge::map_aligned(n * sizeof(T));
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < huge::kHugePage) return std::allocator<T>{}.deallocate(p, n);
    huge::unmap_aligned(p, n * sizeof(T));
  }
  template <class U>
  bool operator==(const HugeAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using HugeVector = std::vector<T, HugeAllocator<T>>;

// A buffer of `size` bytes, huge-page aligned where it is that big; callers back what they use
// (populate()). Its contents start undefined.
class HugeBuffer {
 public:
  explicit HugeBuffer(size_t size) : data_(HugeAllocator<char>{}.allocate(size), Release{size}) {}
  char* data() const { return data_.get(); }
  std::byte* bytes() const { return reinterpret_cast<std::byte*>(data_.get()); }
  size_t size() const { return data_.get_deleter().size; }

 private:
  struct Release {
    size_t size;
    void operator()(char* p) const noexcept { HugeAllocator<char>{}.deallocate(p, size); }
  };
  std::unique_ptr<char[], Release> data_;
};

// Memory backed ahead of when it is wanted (before a freeze, say, for what is read during it),
// handed out in pieces, to several threads at once.
class BackedArena {
 public:
  explicit BackedArena(size_t size) : buf_(size) { populate(buf_.data(), size); }
  // `size` bytes of it, or an empty span when less is left: the caller backs its own then.
  std::span<char> take(size_t size) {
    std::lock_guard lk(mu_);
    if (size == 0 || size > buf_.size() - used_) return {};
    used_ += size;
    return {buf_.data() + used_ - size, size};
  }

 private:
  HugeBuffer buf_;
  std::mutex mu_;
  size_t used_ = 0;
};

}  // namespace ckpt
