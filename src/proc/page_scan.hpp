#pragma once
// Page-table queries with the PAGEMAP_SCAN ioctl (Linux 6.7), and write tracking with userfaultfd
// write-protection in asynchronous mode: a private mapping registered (UFFDIO_REGISTER_MODE_WP)
// with a userfaultfd that has UFFD_FEATURE_WP_ASYNC has its write-protected pages unprotected by
// the kernel on the first write, without a fault reaching anyone; PAGEMAP_SCAN reports such pages
// as written (PAGE_IS_WRITTEN) and, with PM_SCAN_WP_MATCHING, protects them again. Used by the
// rollback helper (app/rollback_memory.hpp) and by incremental dumps
// (resources/write_tracking.hpp).
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "proc/pagemap.hpp"

namespace ckpt::proc {

// Sorted, disjoint, coalesced [start, end) ranges of whole pages.
using RangeSet = std::vector<PageRange>;

RangeSet range_union(const RangeSet& a, const RangeSet& b);
RangeSet range_intersect(const RangeSet& a, const RangeSet& b);
RangeSet range_subtract(const RangeSet& a, const RangeSet& b);
uint64_t range_bytes(const RangeSet& a);
// Sorts and merges arbitrary ranges into a RangeSet.
RangeSet normalize(std::vector<PageRange> ranges);

// One PAGEMAP_SCAN query (see linux/fs.h): a page matches when
// ((categories ^ inverted) & mask) == mask and, if anyof != 0, (categories ^ inverted) & anyof.
struct ScanQuery {
  uint64_t flags = 0;
  uint64_t inverted = 0;
  uint64_t mask = 0;
  uint64_t anyof = 0;
  uint64_t return_mask = 0;
};

// A page region and the categories asked for in return_mask.
struct ScannedRange {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t categories = 0;
};

// Page-table queries on one process. Every query takes the process's mappings: telling a
// page-cache page from a private copy (PAGE_IS_FILE) costs the kernel a look at each page, so
// it is asked only inside file-backed mappings; anonymous memory never holds page cache.
class PageScanner {
 public:
  static Result<PageScanner> open(pid_t pid);

  // Runs `q` over every range of `where`.
  Result<std::vector<ScannedRange>> scan(const RangeSet& where, const ScanQuery& q);

  // Pages with data of their own (present or swapped; not page cache, not the zero page): the
  // pages that can differ from what the mapping gives by itself (zeroes or the file).
  Result<RangeSet> own_data(const RangeSet& where, const std::vector<MapEntry>& maps);
  // own_data(), and the part of it written since the last take_written(). With `protect`, the
  // written part is write-protected again as take_written() does, in the same pass (page cache
  // in file mappings, not own data, is left as it is).
  Status own_data_split(const RangeSet& where, const std::vector<MapEntry>& maps, RangeSet* written,
                        RangeSet* all, bool protect = false);
  // Pages written since the last call (page-cache pages included), write-protected again by this
  // call. Each separate range costs a TLB flush: a few microseconds, more in a VM.
  Result<RangeSet> take_written(const RangeSet& where);
  // Ranges of `where` inside mappings that are not registered for write-protection.
  Result<RangeSet> unprotected(const RangeSet& where);

 private:
  PageScanner(pid_t pid, ScopedFd fd) : pid_(pid), fd_(std::move(fd)) {}
  Result<std::vector<ScannedRange>> scan_own(const RangeSet& where,
                                             const std::vector<MapEntry>& maps,
                                             uint64_t return_mask, uint64_t flags = 0);
  pid_t pid_;
  ScopedFd fd_;
};

// Whether a mapping is one the rollback keeps track of and restores: private, not a kernel
// special mapping ([vdso], [vvar], [vsyscall]...).
bool is_tracked(const MapEntry& m);
// The tracked mappings of `maps` as a RangeSet.
RangeSet tracked_ranges(const std::vector<MapEntry>& maps);

// Registers every range of `ranges` with the userfaultfd for asynchronous write-protection,
// one mapping at a time (a range the kernel refuses stays untracked). Returns how many bytes
// could not be registered; `refused`, when given, gets them.
uint64_t register_for_tracking(int uffd, const RangeSet& ranges, const std::vector<MapEntry>& maps,
                               RangeSet* refused = nullptr);

// The file-backed part of `ranges` (by `maps`).
RangeSet file_backed(const RangeSet& ranges, const std::vector<MapEntry>& maps);

}  // namespace ckpt::proc
