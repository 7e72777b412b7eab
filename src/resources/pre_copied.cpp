#include "resources/pre_copied.hpp"

#include <algorithm>
#include <optional>
#include <span>

#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "common/populate.hpp"
#include "proc/proc_file.hpp"
#include "resources/page_index.hpp"

namespace ckpt {
namespace {

constexpr uint64_t kPiece = 4 << 20;

// MemAvailable of /proc/meminfo in bytes, or nullopt.
std::optional<uint64_t> memory_available() {
  int err = 0;
  auto text = proc::read_text_file("/proc/meminfo", &err);
  if (!text.ok()) return std::nullopt;
  std::string_view rest = *text, line, key, value;
  while (proc::next_line(rest, line)) {
    if (!proc::split_key_value(line, key, value) || key != "MemAvailable") continue;
    auto kib = proc::parse_u64(proc::next_token(value));
    if (kib) return *kib << 10;
  }
  return std::nullopt;
}

}  // namespace

Result<PreCopied> PreCopied::copy(pid_t pid, const std::vector<proc::MapEntry>& maps,
                                  const proc::RangeSet& where) {
  PhaseClock clock("memory", fmt::format("pid {}: pre-copy", pid));
  CKPT_TRY_ASSIGN(proc::PageScanner scanner, proc::PageScanner::open(pid));
  CKPT_TRY_ASSIGN(proc::RangeSet found, scanner.own_data(where, maps));
  clock.mark("pages found");
  PreCopied out;
  uint64_t total = proc::range_bytes(found);
  if (total == 0) return out;
  // The copy is memory of ckpt's own: never so much that the kernel would have to make room by
  // reclaiming the program's, or kill something.
  auto available = memory_available();
  if (!available || total > *available / 2)
    return errorf("pid {}: {} bytes to copy, more than half of the memory available ({} bytes)",
                  pid, total, available.value_or(0));
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
  for (uint64_t at = start; at < end;) {
    if (it == runs_.end() || it->start > at) return errorf("pre-copy: no copy of page {:#x}", at);
    // In pieces, so that the sink hashes one while the write-behind thread writes the last;
    // the copy outlives the sink.
    uint64_t to = std::min({end, it->end, at + kPiece});
    CKPT_TRY(sink.write_behind(
        at, std::span<const char>(data_.data() + it->offset + (at - it->start), to - at)));
    at = to;
    if (at == it->end) ++it;
  }
  return {};
}

}  // namespace ckpt
