#include "proc/maps.hpp"

#include <sys/mman.h>

#include <array>

#include "proc/proc_file.hpp"

namespace ckpt::proc {

namespace {

constexpr std::array<std::string_view, static_cast<size_t>(VmFlag::count)> kFlagCodes = {
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lo", "io", "sr",
    "rr", "dc", "de", "ac", "nr", "ht", "sf", "nl", "ar", "wf", "dd", "sd", "mm",
    "hg", "nh", "mg", "um", "uw", "ss", "sl", "bt", "mt", "ui", "lf", "se", "gu"};

constexpr std::string_view kDeleted = " (deleted)";

MapKind classify(std::string_view path) {
  if (path.empty()) return MapKind::anonymous;
  // Files are printed with absolute paths, so a bracketed name is always the kernel's own.
  if (path.front() != '[' || path.back() != ']') return MapKind::file;
  if (path == "[heap]") return MapKind::heap;
  if (path == "[stack]") return MapKind::stack;
  if (path == "[vdso]") return MapKind::vdso;
  if (path == "[vvar]") return MapKind::vvar;
  if (path == "[vvar_vclock]") return MapKind::vvar_vclock;
  if (path == "[vsyscall]") return MapKind::vsyscall;
  if (path.starts_with("[anon:") || path.starts_with("[anon_shmem:")) return MapKind::anon_named;
  return MapKind::special;
}

Status parse_perms(std::string_view perms, MapEntry& e) {
  if (perms.size() != 4 || (perms[0] != 'r' && perms[0] != '-') ||
      (perms[1] != 'w' && perms[1] != '-') || (perms[2] != 'x' && perms[2] != '-'))
    return errorf("bad permissions '{}'", perms);
  if (perms[0] == 'r') e.prot |= PROT_READ;
  if (perms[1] == 'w') e.prot |= PROT_WRITE;
  if (perms[2] == 'x') e.prot |= PROT_EXEC;
  if (perms[3] != 's' && perms[3] != 'p') return errorf("bad permissions '{}'", perms);
  e.shared = perms[3] == 's';
  return {};
}

Status parse_range(std::string_view range, MapEntry& e) {
  size_t dash = range.find('-');
  auto start = parse_u64(range.substr(0, dash), 16);
  auto end = dash == std::string_view::npos ? std::nullopt : parse_u64(range.substr(dash + 1), 16);
  if (!start || !end || *end < *start) return errorf("bad address range '{}'", range);
  e.start = *start;
  e.end = *end;
  return {};
}

Status parse_dev(std::string_view dev, MapEntry& e) {
  size_t colon = dev.find(':');
  auto major = parse_u64(dev.substr(0, colon), 16);
  auto minor =
      colon == std::string_view::npos ? std::nullopt : parse_u64(dev.substr(colon + 1), 16);
  if (!major || !minor) return errorf("bad device '{}'", dev);
  e.dev_major = static_cast<unsigned>(*major);
  e.dev_minor = static_cast<unsigned>(*minor);
  return {};
}

// Smaps key lines are "Key:   value kB"; headers never have a ':' in their first token.
bool is_smaps_key_line(std::string_view line) {
  std::string_view rest = line;
  std::string_view first = next_token(rest);
  return !first.empty() && first.back() == ':';
}

Status apply_smaps_key(std::string_view line, MapEntry& e) {
  std::string_view key, value;
  split_key_value(line, key, value);
  if (key == "VmFlags") {
    VmFlags flags;
    for (std::string_view tok = next_token(value); !tok.empty(); tok = next_token(value)) {
      if (auto f = VmFlags::from_code(tok)) {
        flags.set(*f);
      } else {
        flags.unknown.emplace_back(tok);
      }
    }
    e.vm_flags = std::move(flags);
    return {};
  }
  uint64_t* target = key == "Rss"         ? &e.rss_kb
                     : key == "Anonymous" ? &e.anonymous_kb
                     : key == "Swap"      ? &e.swap_kb
                                          : nullptr;
  if (!target) return {};
  std::string_view number = next_token(value);
  auto v = parse_u64(number);
  if (!v) return errorf("bad value for {}: '{}'", key, value);
  *target = *v;
  return {};
}

}  // namespace

std::string_view to_string(MapKind kind) {
  switch (kind) {
    case MapKind::anonymous:
      return "anonymous";
    case MapKind::file:
      return "file";
    case MapKind::heap:
      return "heap";
    case MapKind::stack:
      return "stack";
    case MapKind::vdso:
      return "vdso";
    case MapKind::vvar:
      return "vvar";
    case MapKind::vvar_vclock:
      return "vvar_vclock";
    case MapKind::vsyscall:
      return "vsyscall";
    case MapKind::anon_named:
      return "anon_named";
    case MapKind::special:
      return "special";
  }
  return "?";
}

std::string_view VmFlags::code(VmFlag f) {
  return kFlagCodes[static_cast<size_t>(f)];
}

std::optional<VmFlag> VmFlags::from_code(std::string_view code) {
  for (size_t i = 0; i < kFlagCodes.size(); ++i)
    if (kFlagCodes[i] == code) return static_cast<VmFlag>(i);
  return std::nullopt;
}

Result<MapEntry> parse_maps_line(std::string_view line) {
  MapEntry e;
  std::string_view rest = line;
  CKPT_TRY(parse_range(next_token(rest), e));
  CKPT_TRY(parse_perms(next_token(rest), e));
  std::string_view offset = next_token(rest);
  auto off = parse_u64(offset, 16);
  if (!off) return errorf("bad offset '{}'", offset);
  e.offset = *off;
  CKPT_TRY(parse_dev(next_token(rest), e));
  std::string_view inode = next_token(rest);
  auto ino = parse_u64(inode);
  if (!ino) return errorf("bad inode '{}'", inode);
  e.inode = *ino;
  // The path is the rest after the padding; it may itself contain spaces.
  size_t b = rest.find_first_not_of(' ');
  std::string_view path = b == std::string_view::npos ? std::string_view{} : rest.substr(b);
  if (path.ends_with(kDeleted) && path.front() != '[') {
    path.remove_suffix(kDeleted.size());
    e.deleted = true;
  }
  e.path = std::string(path);
  e.kind = classify(path);
  return e;
}

Result<std::vector<MapEntry>> parse_maps(std::string_view text) {
  std::vector<MapEntry> out;
  std::string_view line;
  for (size_t lineno = 1; next_line(text, line); ++lineno) {
    if (line.empty()) continue;
    Status st;
    if (is_smaps_key_line(line)) {
      if (out.empty()) return errorf("line {}: '{}' before any mapping", lineno, line);
      st = apply_smaps_key(line, out.back());
    } else {
      auto e = parse_maps_line(line);
      if (!e) return e.error().wrap(fmt::format("line {}", lineno));
      out.push_back(std::move(*e));
    }
    if (!st) return st.error().wrap(fmt::format("line {}", lineno));
  }
  return out;
}

static Result<std::vector<MapEntry>> read_and_parse(pid_t pid, std::string_view rel) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, rel));
  auto r = parse_maps(text);
  if (!r) return parse_error(pid, rel, r.error());
  return r;
}

Result<std::vector<MapEntry>> read_maps(pid_t pid) {
  return read_and_parse(pid, "maps");
}

Result<std::vector<MapEntry>> read_smaps(pid_t pid) {
  return read_and_parse(pid, "smaps");
}

}  // namespace ckpt::proc
