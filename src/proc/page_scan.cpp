#include "proc/page_scan.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <algorithm>

#include "common/log.hpp"
#include "proc/pagemap_abi.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::proc {
namespace {

using namespace pagemap_abi;

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
    if (s < e) append_range(out, s, e);
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
      if (b[k].start > pos) append_range(out, pos, b[k].start);
      pos = std::max(pos, b[k].end);
    }
    if (pos < r.end) append_range(out, pos, r.end);
  }
  return out;
}

uint64_t range_bytes(const RangeSet& a) {
  uint64_t n = 0;
  for (auto& r : a) n += r.end - r.start;
  return n;
}

Result<PageScanner> PageScanner::open(pid_t pid) {
  std::string path = proc_path(pid, "pagemap");
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return proc_error(pid, "pagemap", "open", errno);
  return PageScanner(pid, std::move(fd));
}

Result<std::vector<ScannedRange>> PageScanner::scan(const RangeSet& where, const ScanQuery& q) {
  std::vector<PageRegion> regions(kMaxRegions);
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
                                                        const std::vector<MapEntry>& maps,
                                                        uint64_t return_mask, uint64_t flags) {
  RangeSet file = file_backed(where, maps);
  std::vector<ScannedRange> out;
  for (bool in_file : {false, true}) {
    ScanQuery q = own_data_query(in_file);
    q.return_mask = return_mask;
    q.flags = flags;
    CKPT_TRY_ASSIGN(auto v, scan(in_file ? file : range_subtract(where, file), q));
    out.insert(out.end(), v.begin(), v.end());
  }
  std::sort(out.begin(), out.end(),
            [](const ScannedRange& a, const ScannedRange& b) { return a.start < b.start; });
  return out;
}

Result<RangeSet> PageScanner::own_data(const RangeSet& where, const std::vector<MapEntry>& maps) {
  CKPT_TRY_ASSIGN(auto v, scan_own(where, maps, 0));
  return to_set(v);
}

Status PageScanner::own_data_split(const RangeSet& where, const std::vector<MapEntry>& maps,
                                   RangeSet* written, RangeSet* all, bool protect) {
  // The kernel protects only the matching pages that are written, so one query does both.
  CKPT_TRY_ASSIGN(auto v, scan_own(where, maps, kIsWritten, protect ? kWpMatching : 0));
  written->clear();
  all->clear();
  for (auto& r : v) {
    append_range(*all, r.start, r.end);
    if (r.categories & kIsWritten) append_range(*written, r.start, r.end);
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

bool is_tracked(const MapEntry& m) {
  return !m.shared && !is_kernel_mapping(m.kind);
}

RangeSet tracked_ranges(const std::vector<MapEntry>& maps) {
  RangeSet out;
  for (auto& m : maps)
    if (is_tracked(m)) append_range(out, m.start, m.end);
  return out;
}

uint64_t register_for_tracking(int uffd, const RangeSet& ranges, const std::vector<MapEntry>& maps,
                               RangeSet* refused) {
  uint64_t failed = 0;
  auto refuse = [&](PageRange r) {
    failed += r.end - r.start;
    if (refused) append_range(*refused, r.start, r.end);
  };
  for (auto& m : maps) {
    if (!is_tracked(m)) continue;
    for (auto r : range_intersect(ranges, {{m.start, m.end}})) {
      if (uffd < 0) {
        refuse(r);
        continue;
      }
      uffdio_register reg{};
      reg.range.start = r.start;
      reg.range.len = r.end - r.start;
      reg.mode = UFFDIO_REGISTER_MODE_WP;
      if (::ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        log::debug("memory", "UFFDIO_REGISTER [{:#x}, {:#x}) {}: errno {}", r.start, r.end, m.path,
                   errno);
        refuse(r);
      }
    }
  }
  return failed;
}

RangeSet file_backed(const RangeSet& ranges, const std::vector<MapEntry>& maps) {
  RangeSet files;
  for (auto& m : maps)
    if (m.kind == MapKind::file) append_range(files, m.start, m.end);
  return range_intersect(ranges, files);
}

}  // namespace ckpt::proc
