#pragma once
// The private pages of a process copied while it ran, before the freeze of a pre-copy dump
// (dump/pre_copy.hpp). At the freeze, write tracking tells which of them were not written since
// they were copied: those are taken from here, and only the others are read while the process is
// stopped (memory::hold_changed).
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_mapping.hpp"
#include "proc/maps.hpp"
#include "proc/page_scan.hpp"

namespace ckpt::page_index {
class PageSink;
}

namespace ckpt {

class PreCopied {
 public:
  // Copies the pages of `where` that have data of their own (present or swapped, not page cache,
  // not the zero page) from process `pid`, which runs meanwhile, through /proc/PID/mem (a
  // process_vm_readv pin would unshare the pages it shares with its children). A range the
  // process unmapped meanwhile is left out; nothing is wrong for that, only read later. Fails
  // when the pages are more than half of the memory available (MemAvailable).
  static Result<PreCopied> copy(pid_t pid, const std::vector<proc::MapEntry>& maps,
                                const proc::RangeSet& where);

  // The addresses copied.
  const proc::RangeSet& ranges() const { return ranges_; }
  uint64_t bytes() const { return proc::range_bytes(ranges_); }
  // Writes the copies of [start, end), which ranges() must hold, into `sink`.
  Status write(uint64_t start, uint64_t end, page_index::PageSink& sink) const;

 private:
  struct Run {
    uint64_t start = 0, end = 0;
    size_t offset = 0;  // in data_
  };
  std::vector<Run> runs_;  // sorted, disjoint
  proc::RangeSet ranges_;
  ScopedMapping data_;
};

}  // namespace ckpt
