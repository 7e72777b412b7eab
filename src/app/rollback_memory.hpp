#pragma once
// Memory of the rollback helper: which pages changed since a checkpoint, and copying them back.
//
// Change tracking uses userfaultfd write-protection in asynchronous mode: every private mapping
// of the target is registered (UFFDIO_REGISTER_MODE_WP) with a userfaultfd the target created,
// and a PAGEMAP_SCAN with PM_SCAN_WP_MATCHING at each checkpoint both returns the pages written
// since the previous scan and write-protects them again. A write to a protected page is resolved
// by the kernel on the spot (no fault reaches us) and only marks the page written, so tracking
// costs the program almost nothing. Pages of mappings that could not be registered always read
// as written, which makes them always restored: slower, never wrong.
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "proc/pagemap.hpp"

namespace ckpt::rollback {

using proc::PageRange;
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
  Result<RangeSet> own_data(const RangeSet& where, const std::vector<proc::MapEntry>& maps);
  // own_data(), and the part of it written since the last take_written().
  Status own_data_split(const RangeSet& where, const std::vector<proc::MapEntry>& maps,
                        RangeSet* written, RangeSet* all);
  // Pages written since the last call (page-cache pages included), write-protected again by this
  // call. Each separate range costs a TLB flush: a few microseconds, more in a VM.
  Result<RangeSet> take_written(const RangeSet& where);
  // Ranges of `where` inside mappings that are not registered for write-protection.
  Result<RangeSet> unprotected(const RangeSet& where);

 private:
  PageScanner(pid_t pid, ScopedFd fd) : pid_(pid), fd_(std::move(fd)) {}
  Result<std::vector<ScannedRange>> scan_own(const RangeSet& where,
                                             const std::vector<proc::MapEntry>& maps,
                                             uint64_t return_mask);
  pid_t pid_;
  ScopedFd fd_;
};

// Whether a mapping is one the rollback keeps track of and restores: private, not a kernel
// special mapping ([vdso], [vvar], [vsyscall]...).
bool is_tracked(const proc::MapEntry& m);
// The tracked mappings of `maps` as a RangeSet.
RangeSet tracked_ranges(const std::vector<proc::MapEntry>& maps);

// Registers every range of `ranges` with the userfaultfd for asynchronous write-protection,
// one mapping at a time (a range the kernel refuses stays untracked). Returns how many bytes
// could not be registered.
uint64_t register_for_tracking(int uffd, const RangeSet& ranges,
                               const std::vector<proc::MapEntry>& maps);

// The file-backed part of `ranges` (by `maps`).
RangeSet file_backed(const RangeSet& ranges, const std::vector<proc::MapEntry>& maps);

// Copies `ranges` from process `from` (read through /proc/FROM/mem) to process `to` through `buf`
// (kept by the caller so that its pages are not faulted in again each time). Pages inside
// `writable` go through process_vm_writev; the others through /proc/TO/mem (`to_mem`), which may
// write read-only private pages. Returns the number of bytes copied.
Result<uint64_t> copy_pages(pid_t from, pid_t to, int to_mem, const RangeSet& ranges,
                            const RangeSet& writable, std::vector<uint8_t>& buf);

// Reads / writes a byte range of another process; writes fall back to /proc/PID/mem.
Status read_remote(pid_t pid, uint64_t addr, void* buf, size_t len);
Status write_remote(pid_t pid, int mem_fd, uint64_t addr, const void* buf, size_t len);

}  // namespace ckpt::rollback
