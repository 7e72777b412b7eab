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
#include "proc/page_scan.hpp"

namespace ckpt::rollback {

using proc::file_backed;
using proc::is_tracked;
using proc::normalize;
using proc::PageRange;
using proc::PageScanner;
using proc::range_bytes;
using proc::range_intersect;
using proc::range_subtract;
using proc::range_union;
using proc::RangeSet;
using proc::register_for_tracking;
using proc::ScannedRange;
using proc::ScanQuery;
using proc::tracked_ranges;

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
