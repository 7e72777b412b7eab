#include "proc/misc.hpp"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "proc/proc_file.hpp"

namespace ckpt::proc {

namespace {

Status timer_key(std::string_view key, std::string_view v, PosixTimer& t) {
  if (key == "signal") {  // "14/0000000000000000"
    size_t slash = v.find('/');
    auto sig = parse_u64(v.substr(0, slash));
    auto val = slash == std::string_view::npos ? std::nullopt : parse_u64(v.substr(slash + 1), 16);
    if (!sig || !val) return errorf("bad signal '{}'", v);
    t.signal = static_cast<int>(*sig);
    t.sigev_value = *val;
  } else if (key == "notify") {  // "signal/pid.42" or "thread/tid.43"
    size_t slash = v.find('/');
    size_t dot = v.find('.', slash);
    if (slash == std::string_view::npos || dot == std::string_view::npos)
      return errorf("bad notify '{}'", v);
    t.notify = std::string(v.substr(0, slash));
    t.notify_thread_id = v.substr(slash + 1, dot - slash - 1) == "tid";
    auto p = parse_i64(v.substr(dot + 1));
    if (!p) return errorf("bad notify '{}'", v);
    t.notify_pid = static_cast<pid_t>(*p);
  } else if (key == "ClockID") {
    auto c = parse_i64(v);
    if (!c) return errorf("bad ClockID '{}'", v);
    t.clock_id = static_cast<int>(*c);
  }
  return {};
}

// kcmp of two tasks' objects of one kind (KCMP_VM, KCMP_FILES): 0 means the same.
Result<bool> same_object(pid_t a, pid_t b, int type, std::string_view what) {
  long r = ::syscall(SYS_kcmp, a, b, type, 0, 0);
  if (r < 0) return sys_error(fmt::format("kcmp ({}) of {} and {}", what, a, b));
  return r == 0;
}

}  // namespace

Result<std::vector<PosixTimer>> parse_timers(std::string_view text) {
  std::vector<PosixTimer> out;
  std::string_view line;
  for (size_t lineno = 1; next_line(text, line); ++lineno) {
    std::string_view key, value;
    if (!split_key_value(line, key, value)) continue;
    if (key == "ID") {
      auto id = parse_i64(value);
      if (!id) return errorf("line {}: bad ID '{}'", lineno, value);
      out.emplace_back();
      out.back().id = static_cast<int>(*id);
      continue;
    }
    if (out.empty()) return errorf("line {}: '{}' before any ID", lineno, key);
    Status st = timer_key(key, value, out.back());
    if (!st) return st.error().wrap(fmt::format("line {}", lineno));
  }
  return out;
}

Result<std::vector<PosixTimer>> read_timers(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, "timers"));
  auto r = parse_timers(text);
  if (!r) return parse_error(pid, "timers", r.error());
  return r;
}

// "1: POSIX  ADVISORY  WRITE 1234 08:02:5678 0 EOF", "2: -> FLOCK ...", "3: LEASE  ACTIVE  READ".
Result<FileLock> parse_lock_line(std::string_view line) {
  FileLock l;
  std::string_view rest = line;
  std::string_view id = next_token(rest);
  auto n = id.ends_with(':') ? parse_u64(id.substr(0, id.size() - 1)) : std::nullopt;
  if (!n) return errorf("bad lock id '{}'", id);
  l.id = static_cast<int>(*n);
  std::string_view kind = next_token(rest);
  if (kind == "->") {
    l.blocked = true;
    kind = next_token(rest);
  }
  l.kind = std::string(kind);
  l.mode = std::string(next_token(rest));
  l.access = std::string(next_token(rest));
  std::string_view pid = next_token(rest);
  auto p = parse_i64(pid);
  if (!p) return errorf("bad lock pid '{}'", pid);
  l.pid = static_cast<pid_t>(*p);
  std::string_view file = next_token(rest);  // "08:02:5678" or "<none>:0"
  size_t c2 = file.rfind(':');
  auto ino = c2 == std::string_view::npos ? std::nullopt : parse_u64(file.substr(c2 + 1));
  if (!ino) return errorf("bad lock file '{}'", file);
  l.inode = *ino;
  std::string_view dev = file.substr(0, c2);
  if (dev != "<none>") {
    size_t c1 = dev.find(':');
    auto ma = parse_u64(dev.substr(0, c1), 16);
    auto mi = c1 == std::string_view::npos ? std::nullopt : parse_u64(dev.substr(c1 + 1), 16);
    if (!ma || !mi) return errorf("bad lock device '{}'", dev);
    l.dev_major = static_cast<unsigned>(*ma);
    l.dev_minor = static_cast<unsigned>(*mi);
  }
  std::string_view start = next_token(rest), end = next_token(rest);
  auto s = parse_u64(start);
  if (!s) return errorf("bad lock start '{}'", start);
  l.start = *s;
  if (end != "EOF") {
    auto e = parse_u64(end);
    if (!e) return errorf("bad lock end '{}'", end);
    l.end = *e;
  }
  return l;
}

Result<std::vector<FileLock>> parse_locks(std::string_view text) {
  std::vector<FileLock> out;
  std::string_view line;
  for (size_t lineno = 1; next_line(text, line); ++lineno) {
    if (trim(line).empty()) continue;
    auto l = parse_lock_line(line);
    if (!l) return l.error().wrap(fmt::format("line {}", lineno));
    out.push_back(std::move(*l));
  }
  return out;
}

Result<std::vector<FileLock>> read_locks() {
  int err = 0;
  CKPT_TRY_ASSIGN(std::string text, read_text_file("/proc/locks", &err));
  auto r = parse_locks(text);
  if (!r) return r.error().wrap("parse /proc/locks");
  return r;
}

Result<std::vector<AuxvEntry>> parse_auxv(std::span<const std::byte> data) {
  std::vector<AuxvEntry> out;
  for (size_t off = 0; off + 16 <= data.size(); off += 16) {
    uint64_t pair[2];
    std::memcpy(pair, data.data() + off, sizeof pair);
    if (pair[0] == 0) return out;  // AT_NULL
    out.emplace_back(pair[0], pair[1]);
  }
  return errorf("no AT_NULL entry in {} bytes", data.size());
}

Result<std::vector<AuxvEntry>> read_auxv(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string raw, read_proc_file(pid, "auxv"));
  auto r = parse_auxv({reinterpret_cast<const std::byte*>(raw.data()), raw.size()});
  if (!r) return parse_error(pid, "auxv", r.error());
  return r;
}

Result<std::string> read_cmdline(pid_t pid) {
  return read_proc_file(pid, "cmdline");
}
Result<std::string> read_environ(pid_t pid) {
  return read_proc_file(pid, "environ");
}
Result<std::string> read_cwd(pid_t pid) {
  return read_proc_link(pid, "cwd");
}
Result<std::string> read_root(pid_t pid) {
  return read_proc_link(pid, "root");
}
Result<std::string> read_exe(pid_t pid) {
  return read_proc_link(pid, "exe");
}

Result<uint32_t> parse_personality(std::string_view text) {
  auto v = parse_u64(trim(text), 16);
  if (!v || *v > UINT32_MAX) return errorf("bad personality '{}'", trim(text));
  return static_cast<uint32_t>(*v);
}

Result<uint32_t> read_personality(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, "personality"));
  auto r = parse_personality(text);
  if (!r) return parse_error(pid, "personality", r.error());
  return r;
}

Result<std::optional<int32_t>> parse_autogroup_nice(std::string_view text) {
  text = trim(text);
  // Empty for a process in no autogroup: one in a session older than autogroups, such as a
  // container's whose init never called setsid().
  if (text.empty()) return std::optional<int32_t>{};
  auto at = text.rfind(" nice ");
  if (text.starts_with("/autogroup-") && at != std::string_view::npos)
    if (auto v = parse_i64(text.substr(at + 6)); v && *v >= -20 && *v <= 19)
      return std::optional<int32_t>{static_cast<int32_t>(*v)};
  return errorf("bad autogroup '{}'", text);
}

Result<std::optional<int32_t>> read_autogroup_nice(pid_t pid) {
  auto text = read_proc_file(pid, "autogroup");
  if (!text) {
    if (text.error().errnum == ENOENT) return std::optional<int32_t>{};
    return text.error();
  }
  auto r = parse_autogroup_nice(*text);
  if (!r) return parse_error(pid, "autogroup", r.error());
  return r;
}

Result<bool> same_open_file(pid_t pid_a, int fd_a, pid_t pid_b, int fd_b) {
  long r = ::syscall(SYS_kcmp, pid_a, pid_b, KCMP_FILE, fd_a, fd_b);
  if (r < 0)
    return sys_error(fmt::format("kcmp pid {} fd {} and pid {} fd {}", pid_a, fd_a, pid_b, fd_b));
  return r == 0;
}

Result<bool> same_memory(pid_t a, pid_t b) {
  return same_object(a, b, KCMP_VM, "address space");
}

Result<bool> same_file_table(pid_t a, pid_t b) {
  return same_object(a, b, KCMP_FILES, "file table");
}

}  // namespace ckpt::proc
