#include "resources/vm_flags.hpp"

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "common/log.hpp"
#include "proc/status.hpp"

namespace ckpt::vm_flags {
namespace {

using proc::MapEntry;
using proc::VmFlag;

bool has(const MapEntry& m, VmFlag f) {
  return m.vm_flags && m.vm_flags->has(f);
}

// Whether `f`, a mapping read now, continues `m` as adopted at address `at` (in both): the
// kernel may since have split or merged mappings (ckpt's own write tracking registers ranges).
bool continues(const MapEntry& m, const MapEntry& f, uint64_t at) {
  return f.prot == m.prot && f.shared == m.shared && f.dev_major == m.dev_major &&
         f.dev_minor == m.dev_minor && f.inode == m.inode && f.path == m.path &&
         f.deleted == m.deleted && f.kind == m.kind &&
         // maps prints the offset of file mappings only (0 for the rest)
         (m.kind != proc::MapKind::file || f.offset + (at - f.start) == m.offset + (at - m.start));
}

// The flags compared: those fork() gives the child as they are (not mlock()'s, nor a
// userfaultfd's, which goes only with fork events), or with `locks`, mlock()'s too. A
// userfaultfd's never count: a mapping registered with one of the program is never adopted
// early, and ckpt's own write tracking registers its mappings during the dump.
uint64_t compared_bits(const proc::VmFlags& f, bool locks) {
  uint64_t bits = f.bits;
  for (VmFlag cleared : {VmFlag::lo, VmFlag::lf, VmFlag::um, VmFlag::uw, VmFlag::ui}) {
    if (locks && (cleared == VmFlag::lo || cleared == VmFlag::lf)) continue;
    bits &= ~(uint64_t{1} << static_cast<unsigned>(cleared));
  }
  return bits;
}

bool same_flags(const MapEntry& a, const MapEntry& b, bool locks) {
  if (!a.vm_flags || !b.vm_flags) return false;
  auto ua = a.vm_flags->unknown, ub = b.vm_flags->unknown;
  std::sort(ua.begin(), ua.end());
  std::sort(ub.begin(), ub.end());
  return compared_bits(*a.vm_flags, locks) == compared_bits(*b.vm_flags, locks) && ua == ub;
}

std::string codes(const MapEntry& m) {
  std::string out;
  if (!m.vm_flags) return "none";
  for (unsigned f = 0; f < static_cast<unsigned>(VmFlag::count); ++f)
    if (m.vm_flags->has(static_cast<VmFlag>(f)))
      out +=
          fmt::format("{}{}", out.empty() ? "" : " ", proc::VmFlags::code(static_cast<VmFlag>(f)));
  for (auto& u : m.vm_flags->unknown) out += fmt::format("{}{}", out.empty() ? "" : " ", u);
  return out;
}

Error moved(pid_t pid, const MapEntry& m, std::string_view what) {
  return make_error(
      fmt::format("pid {}: mapping {:#x}-{:#x} ({}) {} {} and the freeze", pid, m.start, m.end,
                  m.path.empty() ? "anonymous" : m.path, what, kFlagsMovedText),
      kFlagsMoved);
}

}  // namespace

Result<std::vector<MapEntry>> read_early(pid_t pid) {
  return proc::read_smaps(pid);
}

Result<std::optional<std::vector<MapEntry>>> adopt_early(pid_t pid, std::vector<MapEntry> early) {
  using Adopted = std::optional<std::vector<MapEntry>>;
  auto read_now = [&](std::string_view why) {
    log::debug("memory", "pid {}: flags read at the freeze: {}", pid, why);
    return Adopted();
  };
  CKPT_TRY_ASSIGN(auto now, proc::read_maps(pid));
  std::vector<MapEntry> adopted;
  adopted.reserve(now.size());
  uint64_t locked = 0;
  size_t j = 0;
  for (const MapEntry& n : now) {
    // The early mapping it is, or grew or shrank from (a heap, a stack): the same attributes,
    // overlapping. Its flags then are the early ones; the check after the fork proves it.
    while (j < early.size() && early[j].end <= n.start) ++j;
    if (j == early.size() || early[j].start >= n.end ||
        !continues(early[j], n, std::max(n.start, early[j].start)))
      return read_now(
          fmt::format("mapping {:#x}-{:#x} is new since the early read", n.start, n.end));
    const MapEntry& e = early[j];
    if (!e.vm_flags) return read_now("smaps has no VmFlags");
    // The program's own userfaultfd: a registration since then would not show in maps, and one
    // with fork events would tell its monitor of the snapshot.
    if (has(e, VmFlag::um) || has(e, VmFlag::ui))
      return read_now("memory registered with a userfaultfd");
    MapEntry a = e;
    a.start = n.start, a.end = n.end, a.offset = n.offset;
    if (has(a, VmFlag::lo)) locked += a.size();
    adopted.push_back(std::move(a));
  }
  // mlock() of a whole mapping changes no line of maps, and fork() does not copy the flag.
  CKPT_TRY_ASSIGN(auto status, proc::read_status(pid));
  if (status.vm_lck_kb * 1024 != locked) return read_now("its locked memory changed");
  return Adopted(std::move(adopted));
}

namespace {

// `source` is a snapshot of `pid` (forked: MADV_DONTFORK areas missing, flags fork() clears
// not compared) or `pid` itself. Compared by address: every byte of the adopted mappings must be
// in one read now with the same attributes and flags, and nothing else.
Status check(pid_t pid, const std::vector<MapEntry>& adopted, pid_t source) {
  bool forked = source != pid;
  auto read = proc::read_smaps(source);
  if (!read.ok())
    return read.error().wrap(fmt::format("pid {}: {}", pid, forked ? "its snapshot" : "smaps"));
  const std::vector<MapEntry>& got = *read;
  uint64_t covered = 0, grown = 0;
  size_t j = 0;
  for (const MapEntry& m : adopted) {
    if (forked && has(m, VmFlag::dc)) continue;  // fork() left it out
    for (uint64_t at = m.start; at < m.end;) {
      while (j < got.size() && got[j].end <= at) ++j;
      if (j == got.size() || got[j].start > at) return moved(pid, m, "became MADV_DONTFORK");
      const MapEntry& f = got[j];
      if (!continues(m, f, at))
        return moved(pid, m,
                     fmt::format("changed (now {:#x}-{:#x} prot {} offset {:#x} {}{})", f.start,
                                 f.end, f.prot, f.offset, f.path, f.deleted ? " deleted" : ""));
      if (!same_flags(m, f, !forked))
        return moved(pid, m,
                     fmt::format("had flags [{}] at the freeze, not [{}],", codes(f), codes(m)));
      // The stack may have grown down under the injection's frame since the freeze.
      if (at == m.start && f.start < m.start && m.kind == proc::MapKind::stack)
        grown += m.start - f.start;
      at = std::min(m.end, f.end);
    }
    covered += m.size();
  }
  uint64_t total = 0;
  for (const MapEntry& f : got) total += f.size();
  if (total != covered + grown) {
    for (const MapEntry& f : got)
      if (f.kind != proc::MapKind::stack &&
          std::none_of(adopted.begin(), adopted.end(), [&](const MapEntry& m) {
            return !(forked && has(m, VmFlag::dc)) && m.start <= f.start && f.start < m.end;
          }))
        return moved(pid, f, forked ? "is in the snapshot (MADV_DONTFORK no more)" : "appeared");
    return make_error(
        fmt::format("pid {}: its mappings changed {} and the freeze", pid, kFlagsMovedText),
        kFlagsMoved);
  }
  return {};
}

}  // namespace

Status check_at_fork(pid_t pid, const std::vector<MapEntry>& adopted, pid_t snap) {
  return check(pid, adopted, snap);
}

Status check_now(pid_t pid, const std::vector<MapEntry>& adopted) {
  return check(pid, adopted, pid);
}

Status check_kept(pid_t pid, const std::vector<MapEntry>& adopted) {
  auto read = proc::read_smaps(pid);
  if (!read.ok()) return read.error().wrap(fmt::format("pid {}: smaps", pid));
  const std::vector<MapEntry>& got = *read;
  size_t j = 0;
  for (const MapEntry& m : adopted) {
    for (uint64_t at = m.start; at < m.end;) {
      while (j < got.size() && got[j].end <= at) ++j;
      if (j == got.size() || got[j].start >= m.end) break;
      const MapEntry& f = got[j];
      if (f.start > at) {
        at = f.start;
        continue;
      }
      if (continues(m, f, at) && !same_flags(m, f, true))
        return moved(pid, m, fmt::format("has flags [{}], not [{}]: changed", codes(f), codes(m)));
      at = std::min(m.end, f.end);
    }
  }
  return {};
}

}  // namespace ckpt::vm_flags
