#pragma once
// Which pages of a process are worth saving, from /proc/PID/pagemap.
//
// The PAGEMAP_SCAN ioctl (Linux 6.7) returns matching ranges directly; reading 8 bytes of
// pagemap per page is the fallback for older kernels.
#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::proc {

struct PageRange {
  uint64_t start = 0;
  uint64_t end = 0;
  bool operator==(const PageRange&) const = default;
};

enum class PageFilter {
  // Present or swapped pages that are anonymous: all touched pages of private anonymous memory,
  // and the copy-on-write copies inside private file mappings (file-backed pages are skipped
  // because the file still holds them).
  private_anon,
  // Present or swapped pages of any kind (for shared mappings the caller saves itself).
  populated,
};

class Pagemap {
 public:
  static Result<Pagemap> open(pid_t pid);

  // Sorted, non-overlapping, coalesced ranges of [start, end) matching `filter`. Uses the ioctl
  // when the kernel has it, else reads pagemap entries.
  Result<std::vector<PageRange>> scan(uint64_t start, uint64_t end,
                                      PageFilter filter = PageFilter::private_anon);
  // The two implementations, public so that tests can compare them.
  // scan_ioctl fails with errnum ENOTTY or EINVAL when the kernel lacks PAGEMAP_SCAN.
  Result<std::vector<PageRange>> scan_ioctl(uint64_t start, uint64_t end, PageFilter filter);
  Result<std::vector<PageRange>> scan_read(uint64_t start, uint64_t end, PageFilter filter);

  // Pages of [start, end) that this process maps from the very physical page `other` maps at the
  // same address as anonymous memory (what fork() left shared): equal contents. PFNs read as 0
  // without CAP_SYS_ADMIN, and then no page is.
  Result<std::vector<PageRange>> same_pages(const Pagemap& other, uint64_t start,
                                            uint64_t end) const;

  // Regions returned per ioctl call; small values exercise the continuation from walk_end.
  void set_ioctl_batch(size_t regions) { batch_ = std::clamp<size_t>(regions, 1, 512); }
  bool has_ioctl() const { return ioctl_supported_; }
  int fd() const { return fd_.get(); }

 private:
  Pagemap(pid_t pid, ScopedFd fd) : pid_(pid), fd_(std::move(fd)) {}

  pid_t pid_;
  ScopedFd fd_;
  bool ioctl_supported_ = true;
  size_t batch_ = 512;  // pagemap_abi::kMaxRegions
};

// Appends [start, end) to `out`, merging with the last range when they touch.
void append_range(std::vector<PageRange>& out, uint64_t start, uint64_t end);

}  // namespace ckpt::proc
