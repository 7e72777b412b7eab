#include "app/rollback_memory.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "common/log.hpp"
#include "proc/pagemap_abi.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::rollback {
namespace {

using namespace proc::pagemap_abi;

constexpr size_t kCopyBuffer = 8 << 20;
constexpr size_t kMaxIov = 1024;

// Own data: present or swapped, and not the shared zero page (nor, with `file`, page cache).
ScanQuery own_data_query(bool file) {
  ScanQuery q;
  q.inverted = kIsPfnZero | (file ? kIsFile : 0);
  q.mask = q.inverted;
  q.anyof = kIsPresent | kIsSwapped;
  return q;
}

RangeSet to_set(const std::vector<ScannedRange>& v) {
  RangeSet out;
  for (auto& r : v) proc::append_range(out, r.start, r.end);
  return out;
}

// Pieces of `ranges` that fit one process_vm_* call: at most kMaxIov iovecs, kCopyBuffer bytes.
struct Batch {
  std::vector<iovec> remote;
  size_t bytes = 0;
};

std::vector<Batch> make_batches(const RangeSet& ranges) {
  std::vector<Batch> out(1);
  for (auto r : ranges) {
    uint64_t pos = r.start;
    while (pos < r.end) {
      Batch& b = out.back();
      if (b.remote.size() == kMaxIov || b.bytes == kCopyBuffer) {
        out.emplace_back();
        continue;
      }
      size_t n = std::min<uint64_t>(r.end - pos, kCopyBuffer - b.bytes);
      b.remote.push_back({reinterpret_cast<void*>(pos), n});
      b.bytes += n;
      pos += n;
    }
  }
  if (out.back().remote.empty()) out.pop_back();
  return out;
}

Status pwrite_all(int mem_fd, pid_t pid, uint64_t addr, const uint8_t* p, size_t len) {
  while (len > 0) {
    ssize_t n = ::pwrite(mem_fd, p, len, static_cast<off_t>(addr));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return sys_error(n < 0 ? errno : EIO, fmt::format("write /proc/{}/mem at {:#x}", pid, addr));
    addr += static_cast<uint64_t>(n);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

// Copies one batch through `buf`: read from `from`, write to `to`. Read through /proc/PID/mem,
// not process_vm_readv, whose pinning would give each page read a copy of its own in the
// snapshot when other snapshots still share it (proc_file.hpp, MemFile).
Status copy_batch(const proc::MemFile& from, pid_t to, int to_mem, const Batch& b,
                  std::vector<uint8_t>& buf, bool use_writev) {
  uint8_t* at = buf.data();
  for (auto& io : b.remote) {
    CKPT_TRY(from.read(reinterpret_cast<uint64_t>(io.iov_base), at, io.iov_len));
    at += io.iov_len;
  }
  iovec local{buf.data(), b.bytes};
  if (use_writev) {
    ssize_t n = ::process_vm_writev(to, &local, 1, b.remote.data(), b.remote.size(), 0);
    if (n == static_cast<ssize_t>(b.bytes)) return {};
    log::debug("rollback", "process_vm_writev pid {}: {}; using /proc/{}/mem", to, n, to);
  }
  const uint8_t* p = buf.data();
  for (auto& io : b.remote) {
    CKPT_TRY(pwrite_all(to_mem, to, reinterpret_cast<uint64_t>(io.iov_base), p, io.iov_len));
    p += io.iov_len;
  }
  return {};
}

}  // namespace

RangeSet normalize(std::vector<PageRange> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const PageRange& a, const PageRange& b) { return a.start < b.start; });
  RangeSet out;
  for (auto& r : ranges) {
    if (r.start >= r.end) continue;
    if (!out.empty() && r.start <= out.back().end) {
      out.back().end = std::max(out.back().end, r.end);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

RangeSet range_union(const RangeSet& a, const RangeSet& b) {
  std::vector<PageRange> all(a);
  all.insert(all.end(), b.begin(), b.end());
  return normalize(std::move(all));
}

RangeSet range_intersect(const RangeSet& a, const RangeSet& b) {
  RangeSet out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uint64_t s = std::max(a[i].start, b[j].start);
    uint64_t e = std::min(a[i].end, b[j].end);
    if (s < e) proc::append_range(out, s, e);
    if (a[i].end < b[j].end) {
      ++i;
    } else {
      ++j;
    }
  }
  return out;
}

RangeSet range_subtract(const RangeSet& a, const RangeSet& b) {
  RangeSet out;
  size_t j = 0;
  for (auto r : a) {
    uint64_t pos = r.start;
    while (j < b.size() && b[j].end <= pos) ++j;
    for (size_t k = j; k < b.size() && b[k].start < r.end; ++k) {
      if (b[k].start > pos) proc::append_range(out, pos, b[k].start);
      pos = std::max(pos, b[k].end);
    }
    if (pos < r.end) proc::append_range(out, pos, r.end);
  }
  return out;
}

uint64_t range_bytes(const RangeSet& a) {
  uint64_t n = 0;
  for (auto& r : a) n += r.end - r.start;
  return n;
}

Result<PageScanner> PageScanner::open(pid_t pid) {
  std::string path = proc::proc_path(pid, "pagemap");
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return proc::proc_error(pid, "pagemap", "open", errno);
  return PageScanner(pid, std::move(fd));
}

Result<std::vector<ScannedRange>> PageScanner::scan(const RangeSet& where, const ScanQuery& q) {
  std::vector<PageRegion> regions(4096);
  std::vector<ScannedRange> out;
  PmScanArg arg{};
  arg.size = sizeof arg;
  arg.flags = q.flags;
  arg.vec = reinterpret_cast<uintptr_t>(regions.data());
  arg.vec_len = regions.size();
  arg.category_inverted = q.inverted;
  arg.category_mask = q.mask;
  arg.category_anyof_mask = q.anyof;
  arg.return_mask = q.return_mask;
  for (auto r : where) {
    arg.end = r.end;
    for (uint64_t pos = r.start; pos < r.end;) {
      arg.start = pos;
      int n = ::ioctl(fd_.get(), kPagemapScan, &arg);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return sys_error(
            fmt::format("PAGEMAP_SCAN /proc/{}/pagemap [{:#x}, {:#x})", pid_, pos, r.end));
      for (int i = 0; i < n; ++i) {
        auto& g = regions[static_cast<size_t>(i)];
        if (!out.empty() && out.back().end == g.start && out.back().categories == g.categories) {
          out.back().end = g.end;
        } else {
          out.push_back({g.start, g.end, g.categories});
        }
      }
      if (arg.walk_end <= pos) break;
      pos = arg.walk_end;
    }
  }
  return out;
}

Result<std::vector<ScannedRange>> PageScanner::scan_own(const RangeSet& where,
                                                        const std::vector<proc::MapEntry>& maps,
                                                        uint64_t return_mask) {
  RangeSet file = file_backed(where, maps);
  std::vector<ScannedRange> out;
  for (bool in_file : {false, true}) {
    ScanQuery q = own_data_query(in_file);
    q.return_mask = return_mask;
    CKPT_TRY_ASSIGN(auto v, scan(in_file ? file : range_subtract(where, file), q));
    out.insert(out.end(), v.begin(), v.end());
  }
  std::sort(out.begin(), out.end(),
            [](const ScannedRange& a, const ScannedRange& b) { return a.start < b.start; });
  return out;
}

Result<RangeSet> PageScanner::own_data(const RangeSet& where,
                                       const std::vector<proc::MapEntry>& maps) {
  CKPT_TRY_ASSIGN(auto v, scan_own(where, maps, 0));
  return to_set(v);
}

Status PageScanner::own_data_split(const RangeSet& where, const std::vector<proc::MapEntry>& maps,
                                   RangeSet* written, RangeSet* all) {
  CKPT_TRY_ASSIGN(auto v, scan_own(where, maps, kIsWritten));
  written->clear();
  all->clear();
  for (auto& r : v) {
    proc::append_range(*all, r.start, r.end);
    if (r.categories & kIsWritten) proc::append_range(*written, r.start, r.end);
  }
  return {};
}

Result<RangeSet> PageScanner::take_written(const RangeSet& where) {
  // Holes are left alone (protecting them would fill page tables with markers): a page that
  // appears later reads as written anyway.
  ScanQuery q = own_data_query(false);
  q.flags = kWpMatching;
  q.mask |= kIsWritten;
  CKPT_TRY_ASSIGN(auto v, scan(where, q));
  return to_set(v);
}

Result<RangeSet> PageScanner::unprotected(const RangeSet& where) {
  ScanQuery q;
  q.inverted = kIsWpAllowed;
  q.mask = kIsWpAllowed;
  CKPT_TRY_ASSIGN(auto v, scan(where, q));
  return to_set(v);
}

bool is_tracked(const proc::MapEntry& m) {
  return !m.shared && !proc::is_kernel_mapping(m.kind);
}

RangeSet tracked_ranges(const std::vector<proc::MapEntry>& maps) {
  RangeSet out;
  for (auto& m : maps)
    if (is_tracked(m)) proc::append_range(out, m.start, m.end);
  return out;
}

uint64_t register_for_tracking(int uffd, const RangeSet& ranges,
                               const std::vector<proc::MapEntry>& maps) {
  uint64_t failed = 0;
  for (auto& m : maps) {
    if (!is_tracked(m)) continue;
    for (auto r : range_intersect(ranges, {{m.start, m.end}})) {
      if (uffd < 0) {
        failed += r.end - r.start;
        continue;
      }
      uffdio_register reg{};
      reg.range.start = r.start;
      reg.range.len = r.end - r.start;
      reg.mode = UFFDIO_REGISTER_MODE_WP;
      if (::ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        log::debug("rollback", "UFFDIO_REGISTER [{:#x}, {:#x}) {}: errno {}", r.start, r.end,
                   m.path, errno);
        failed += r.end - r.start;
      }
    }
  }
  return failed;
}

RangeSet file_backed(const RangeSet& ranges, const std::vector<proc::MapEntry>& maps) {
  RangeSet files;
  for (auto& m : maps)
    if (m.kind == proc::MapKind::file) proc::append_range(files, m.start, m.end);
  return range_intersect(ranges, files);
}

Result<uint64_t> copy_pages(pid_t from, pid_t to, int to_mem, const RangeSet& ranges,
                            const RangeSet& writable, std::vector<uint8_t>& buf) {
  uint64_t copied = 0;
  if (buf.size() < kCopyBuffer) buf.resize(kCopyBuffer);
  CKPT_TRY_ASSIGN(proc::MemFile source, proc::MemFile::open(from));
  for (int pass = 0; pass < 2; ++pass) {
    RangeSet part =
        pass == 0 ? range_intersect(ranges, writable) : range_subtract(ranges, writable);
    for (auto& b : make_batches(part)) {
      CKPT_TRY(copy_batch(source, to, to_mem, b, buf, pass == 0));
      copied += b.bytes;
    }
  }
  return copied;
}

Status read_remote(pid_t pid, uint64_t addr, void* buf, size_t len) {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n != static_cast<ssize_t>(len))
    return sys_error(n < 0 ? errno : EFAULT,
                     fmt::format("read {} bytes at {:#x} in pid {}", len, addr, pid));
  return {};
}

Status write_remote(pid_t pid, int mem_fd, uint64_t addr, const void* buf, size_t len) {
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return {};
  if (mem_fd < 0)
    return sys_error(n < 0 ? errno : EFAULT,
                     fmt::format("write {} bytes at {:#x} in pid {}", len, addr, pid));
  return pwrite_all(mem_fd, pid, addr, static_cast<const uint8_t*>(buf), len);
}

}  // namespace ckpt::rollback
