#pragma once
// ScopedMapping owns an anonymous private mapping and unmaps it on destruction.
#include <sys/mman.h>

#include <cstddef>
#include <utility>

namespace ckpt {

class ScopedMapping {
 public:
  ScopedMapping() = default;
  // A mapping of `size` bytes, or an empty one (data() null) when the kernel refuses it.
  static ScopedMapping anonymous(size_t size) {
    return map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  }
  // The same with other protections and flags (MAP_ANONYMOUS among them).
  static ScopedMapping map(size_t size, int prot, int flags) {
    if (size == 0) return {};
    void* p = ::mmap(nullptr, size, prot, flags, -1, 0);
    return p == MAP_FAILED ? ScopedMapping() : ScopedMapping(static_cast<char*>(p), size);
  }
  ScopedMapping(const ScopedMapping&) = delete;
  ScopedMapping& operator=(const ScopedMapping&) = delete;
  ScopedMapping(ScopedMapping&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  ScopedMapping& operator=(ScopedMapping&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~ScopedMapping() { reset(); }

  char* data() const { return data_; }
  size_t size() const { return size_; }
  void reset() {
    if (data_) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  ScopedMapping(char* data, size_t size) : data_(data), size_(size) {}
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ckpt
