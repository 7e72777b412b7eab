#pragma once
// How the target's mappings must change to look as they did at a checkpoint.
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "app/rollback_memory.hpp"
#include "common/result.hpp"
#include "proc/maps.hpp"

namespace ckpt::rollback {

// A mapping of the checkpoint that has to be made again over [start, end) (it was unmapped or
// replaced since), from `from` (the checkpoint's mapping that covered it).
struct Remap {
  uint64_t start = 0;
  uint64_t end = 0;
  proc::MapEntry from;
};

struct Protect {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;
};

struct MapPlan {
  RangeSet unmap;                // mapped now, not (or not so) at the checkpoint
  std::vector<Remap> remap;      // to map again; private ones get all their pages back
  std::vector<Protect> protect;  // same mapping, other protection
  RangeSet same_private;         // same private mapping: only changed pages are copied
};

// Compares the mappings of the checkpoint with the current ones. Kernel special mappings
// ([vdso], [vvar], ...) are left alone.
MapPlan plan_mappings(const std::vector<proc::MapEntry>& then,
                      const std::vector<proc::MapEntry>& now);

// The end of the [heap] mapping, or start_brk when the process has none: where brk() must be
// for the heap to look like this list.
Result<uint64_t> heap_end(pid_t pid, const std::vector<proc::MapEntry>& maps);

// Whether the two mappings map the same thing at `addr` (same file and offset, or both anonymous
// and equally shared).
bool same_mapping(const proc::MapEntry& a, const proc::MapEntry& b, uint64_t addr);

}  // namespace ckpt::rollback
