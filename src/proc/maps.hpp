#pragma once
// /proc/PID/maps and /proc/PID/smaps: the address space of a process.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

enum class MapKind {
  anonymous,    // no path
  file,         // a path (possibly deleted, a memfd, /dev/zero for shared anonymous memory)
  heap,         // [heap]
  stack,        // [stack]
  vdso,         // [vdso]
  vvar,         // [vvar]
  vvar_vclock,  // [vvar_vclock]
  vsyscall,     // [vsyscall]
  anon_named,   // [anon:NAME] or [anon_shmem:NAME] (prctl PR_SET_VMA_ANON_NAME)
  special,      // any other [..] name, e.g. [uprobes]
};

std::string_view to_string(MapKind kind);

// The kernel's own mappings ([vdso], [vvar], [vvar_vclock], [vsyscall], [uprobes], ...): no
// program data in them.
inline bool is_kernel_mapping(MapKind kind) {
  switch (kind) {
    case MapKind::vdso:
    case MapKind::vvar:
    case MapKind::vvar_vclock:
    case MapKind::vsyscall:
    case MapKind::special:
      return true;
    default:
      return false;
  }
}

// VmFlags from smaps, one bit each. The kernel prints two-letter codes; codes unknown to this
// list stay in VmFlags::unknown so that a newer kernel's flags are not lost silently.
enum class VmFlag : unsigned {
  rd,
  wr,
  ex,
  sh,
  mr,
  mw,
  me,
  ms,
  gd,
  pf,
  lo,
  io,
  sr,
  rr,
  dc,
  de,
  ac,
  nr,
  ht,
  sf,
  nl,
  ar,
  wf,
  dd,
  sd,
  mm,
  hg,
  nh,
  mg,
  um,
  uw,
  ss,
  sl,
  bt,
  mt,
  ui,
  lf,
  se,
  gu,
  count
};
static_assert(static_cast<unsigned>(VmFlag::count) <= 64);

struct VmFlags {
  uint64_t bits = 0;
  std::vector<std::string> unknown;

  bool has(VmFlag f) const { return bits & (uint64_t{1} << static_cast<unsigned>(f)); }
  void set(VmFlag f) { bits |= uint64_t{1} << static_cast<unsigned>(f); }
  // The two-letter code of a flag ("gd"), and the flag of a code.
  static std::string_view code(VmFlag f);
  static std::optional<VmFlag> from_code(std::string_view code);
};

struct MapEntry {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;         // PROT_READ | PROT_WRITE | PROT_EXEC
  bool shared = false;  // 's' rather than 'p'
  uint64_t offset = 0;
  unsigned dev_major = 0;
  unsigned dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // without the " (deleted)" suffix; "[heap]" etc. for special mappings
  bool deleted = false;
  MapKind kind = MapKind::anonymous;

  // Filled only when read from smaps.
  std::optional<VmFlags> vm_flags;
  uint64_t rss_kb = 0;
  uint64_t anonymous_kb = 0;
  uint64_t swap_kb = 0;

  uint64_t size() const { return end - start; }
};

// Parses one maps header line ("7f..-7f.. rw-p 00000000 08:01 1234   /lib/x.so").
Result<MapEntry> parse_maps_line(std::string_view line);
// Parses the whole text of maps or smaps (smaps adds key lines after each header).
Result<std::vector<MapEntry>> parse_maps(std::string_view text);

// /proc/PID/maps: cheap, no VmFlags.
Result<std::vector<MapEntry>> read_maps(pid_t pid);
// /proc/PID/smaps in one pass: everything maps has plus VmFlags and Rss/Anonymous/Swap. Costs a
// page-table walk per mapping in the kernel (see bench/proc_bench.cpp).
Result<std::vector<MapEntry>> read_smaps(pid_t pid);

}  // namespace ckpt::proc
