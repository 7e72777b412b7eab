#include "proc/pagemap.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include "proc/pagemap_abi.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::proc {

namespace {

using namespace pagemap_abi;

constexpr uint64_t kPmPresent = uint64_t{1} << 63;
constexpr uint64_t kPmSwapped = uint64_t{1} << 62;
constexpr uint64_t kPmFileOrSharedAnon = uint64_t{1} << 61;
constexpr uint64_t kPmPfn = (uint64_t{1} << 55) - 1;

uint64_t page_size() {
  return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

bool wanted(uint64_t entry, PageFilter filter) {
  if (!(entry & (kPmPresent | kPmSwapped))) return false;
  return filter == PageFilter::populated || !(entry & kPmFileOrSharedAnon);
}

}  // namespace

void append_range(std::vector<PageRange>& out, uint64_t start, uint64_t end) {
  if (!out.empty() && out.back().end == start) {
    out.back().end = end;
  } else {
    out.push_back({start, end});
  }
}

Result<Pagemap> Pagemap::open(pid_t pid) {
  std::string path = proc_path(pid, "pagemap");
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return proc_error(pid, "pagemap", "open", errno);
  return Pagemap(pid, std::move(fd));
}

Result<std::vector<PageRange>> Pagemap::scan(uint64_t start, uint64_t end, PageFilter filter) {
  if (ioctl_supported_) {
    auto r = scan_ioctl(start, end, filter);
    if (r || (r.error().errnum != ENOTTY && r.error().errnum != EINVAL)) return r;
    ioctl_supported_ = false;
  }
  return scan_read(start, end, filter);
}

Result<std::vector<PageRange>> Pagemap::scan_ioctl(uint64_t start, uint64_t end,
                                                   PageFilter filter) {
  std::vector<PageRegion> regions(batch_);
  std::vector<PageRange> out;
  PmScanArg arg{};
  arg.size = sizeof arg;
  arg.end = end;
  arg.vec = reinterpret_cast<uintptr_t>(regions.data());
  arg.vec_len = regions.size();
  arg.category_anyof_mask = kIsPresent | kIsSwapped;
  // The shared zero page (read but never written) holds nothing worth saving.
  arg.category_inverted = kIsPfnZero;
  if (filter == PageFilter::private_anon) arg.category_inverted |= kIsFile;
  arg.category_mask = arg.category_inverted;
  // No return_mask: all matching pages report the same (empty) categories, so the kernel merges
  // neighbours into as few regions as possible.
  for (uint64_t pos = start; pos < end;) {
    arg.start = pos;
    int n = ::ioctl(fd_.get(), kPagemapScan, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(
          fmt::format("PAGEMAP_SCAN {} [{:#x}, {:#x})", proc_path(pid_, "pagemap"), pos, end));
    }
    for (int i = 0; i < n; ++i) append_range(out, regions[i].start, regions[i].end);
    if (arg.walk_end <= pos) break;  // no progress: the kernel walked nothing more
    pos = arg.walk_end;
  }
  return out;
}

Result<std::vector<PageRange>> Pagemap::scan_read(uint64_t start, uint64_t end, PageFilter filter) {
  const uint64_t ps = page_size();
  std::vector<uint64_t> entries(65536);  // 256 MiB of address space per read
  std::vector<PageRange> out;
  for (uint64_t page = start / ps; page < (end + ps - 1) / ps;) {
    uint64_t count = std::min<uint64_t>(entries.size(), (end + ps - 1) / ps - page);
    off_t offset = static_cast<off_t>(page * sizeof(uint64_t));
    ssize_t n = ::pread(fd_.get(), entries.data(), count * sizeof(uint64_t), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(fmt::format("read {} at offset {}", proc_path(pid_, "pagemap"), offset));
    }
    if (n == 0) break;  // past the end of the user address space
    uint64_t got = static_cast<uint64_t>(n) / sizeof(uint64_t);
    for (uint64_t i = 0; i < got; ++i)
      if (wanted(entries[i], filter)) append_range(out, (page + i) * ps, (page + i + 1) * ps);
    page += got;
  }
  return out;
}

namespace {

// Reads `count` entries from page `page` on; fewer at the end of the address space.
Result<size_t> read_entries(int fd, pid_t pid, uint64_t page, uint64_t* out, size_t count) {
  off_t offset = static_cast<off_t>(page * sizeof(uint64_t));
  for (;;) {
    ssize_t n = ::pread(fd, out, count * sizeof(uint64_t), offset);
    if (n >= 0) return static_cast<size_t>(n) / sizeof(uint64_t);
    if (errno != EINTR)
      return sys_error(fmt::format("read {} at offset {}", proc_path(pid, "pagemap"), offset));
  }
}

}  // namespace

Result<std::vector<PageRange>> Pagemap::same_pages(const Pagemap& other, uint64_t start,
                                                   uint64_t end) const {
  const uint64_t ps = page_size();
  std::vector<uint64_t> mine(8192), theirs(8192);
  std::vector<PageRange> out;
  for (uint64_t page = start / ps; page < end / ps;) {
    size_t want = std::min<uint64_t>(mine.size(), end / ps - page);
    CKPT_TRY_ASSIGN(size_t a, read_entries(fd_.get(), pid_, page, mine.data(), want));
    CKPT_TRY_ASSIGN(size_t b, read_entries(other.fd_.get(), other.pid_, page, theirs.data(), want));
    size_t got = std::min(a, b);
    if (got == 0) break;
    for (size_t i = 0; i < got; ++i) {
      uint64_t pfn = mine[i] & kPmPfn;
      bool same = (mine[i] & kPmPresent) && (theirs[i] & kPmPresent) && pfn != 0 &&
                  pfn == (theirs[i] & kPmPfn) && !(theirs[i] & kPmFileOrSharedAnon);
      if (same) append_range(out, (page + i) * ps, (page + i + 1) * ps);
    }
    page += got;
  }
  return out;
}

}  // namespace ckpt::proc
