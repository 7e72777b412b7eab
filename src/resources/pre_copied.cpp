#include "resources/pre_copied.hpp"

#include <algorithm>
#include <span>

#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "common/populate.hpp"
#include "proc/proc_file.hpp"
#include "resources/page_index.hpp"

namespace ckpt {

Result<PreCopied> PreCopied::copy(pid_t pid, const std::vector<proc::MapEntry>& maps,
                                  const proc::RangeSet& where) {
  PhaseClock clock("memory", fmt::format("pid {}: pre-copy", pid));
  CKPT_TRY_ASSIGN(proc::PageScanner scanner, proc::PageScanner::open(pid));
  CKPT_TRY_ASSIGN(proc::RangeSet found, scanner.own_data(where, maps));
  clock.mark("pages found");
  PreCopied out;
  uint64_t total = proc::range_bytes(found);
  if (total == 0) return out;
  out.data_ = ScopedMapping::anonymous(total);
  if (!out.data_.data())
    return sys_error(fmt::format("pid {}: pre-copy: {} bytes of memory", pid, total));
  // First touches from user space are slow here; the kernel backs it faster (populate.hpp).
  populate(out.data_.data(), total);
  clock.mark("buffer backed");
  CKPT_TRY_ASSIGN(proc::MemFile mem, proc::MemFile::open(pid));
  size_t at = 0;
  for (auto& r : found) {
    if (Status st = mem.read(r.start, out.data_.data() + at, r.end - r.start); !st.ok()) {
      log::debug("memory", "pid {}: pre-copy left out [{:#x}, {:#x}): {}", pid, r.start, r.end,
                 st.error().message);
      continue;
    }
    out.runs_.push_back({r.start, r.end, at});
    proc::append_range(out.ranges_, r.start, r.end);
    at += r.end - r.start;
  }
  clock.mark(fmt::format("{} ranges read", found.size()));
  return out;
}

Status PreCopied::write(uint64_t start, uint64_t end, page_index::PageSink& sink) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), start,
                             [](uint64_t a, const Run& r) { return a < r.end; });
  for (uint64_t at = start; at < end; ++it) {
    if (it == runs_.end() || it->start > at) return errorf("pre-copy: no copy of page {:#x}", at);
    uint64_t to = std::min(end, it->end);
    CKPT_TRY(sink.write(
        at, std::span<const char>(data_.data() + it->offset + (at - it->start), to - at)));
    at = to;
  }
  return {};
}

}  // namespace ckpt
