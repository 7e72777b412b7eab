#include "proc/fdinfo.hpp"

#include <cerrno>

#include "proc/proc_file.hpp"
#include "proc/task.hpp"

namespace ckpt::proc {

namespace {

template <typename T>
Status number(std::string_view v, T& out, int base = 10) {
  auto n = parse_u64(v, base);
  if (!n) return errorf("bad number '{}'", v);
  out = static_cast<T>(*n);
  return {};
}

template <typename T>
Status number(std::string_view v, std::optional<T>& out, int base = 10) {
  T tmp{};
  CKPT_TRY(number(v, tmp, base));
  out = tmp;
  return {};
}

// "(1, 500)" as printed for timerfd it_value / it_interval.
Status timer_spec(std::string_view v, std::optional<TimerSpec>& out) {
  if (!v.starts_with('(') || !v.ends_with(')')) return errorf("bad time '{}'", v);
  v = v.substr(1, v.size() - 2);
  size_t comma = v.find(',');
  auto sec = parse_i64(trim(v.substr(0, comma)));
  auto nsec = comma == std::string_view::npos ? std::nullopt : parse_i64(trim(v.substr(comma + 1)));
  if (!sec || !nsec) return errorf("bad time '({})'", v);
  out = TimerSpec{*sec, *nsec};
  return {};
}

// "tfd:        5 events:       19 data:                5  pos:0 ino:61af sdev:7"
Status epoll_target(std::string_view line, FdInfo& info) {
  EpollTarget t;
  std::string_view rest = line;
  while (true) {
    std::string_view key = next_token(rest);
    if (key.empty()) break;
    std::string_view value;
    if (key.back() == ':') {
      value = next_token(rest);
      key.remove_suffix(1);
    } else if (size_t c = key.find(':'); c != std::string_view::npos) {
      value = key.substr(c + 1);
      key = key.substr(0, c);
    }
    Status st;
    if (key == "tfd")
      st = number(value, t.tfd);
    else if (key == "events")
      st = number(value, t.events, 16);
    else if (key == "data")
      st = number(value, t.data, 16);
    else if (key == "pos")
      st = number(value, t.pos);
    else if (key == "ino")
      st = number(value, t.ino, 16);
    else if (key == "sdev")
      st = number(value, t.sdev, 16);
    if (!st) return st.error().wrap(fmt::format("epoll {}", key));
  }
  info.epoll_targets.push_back(t);
  return {};
}

Status apply_line(std::string_view line, std::string_view key, std::string_view v, FdInfo& info) {
  if (key == "pos") return number(v, info.pos);
  if (key == "flags") return number(v, info.flags, 8);
  if (key == "mnt_id") return number(v, info.mnt_id);
  if (key == "ino") return number(v, info.ino);
  if (key == "eventfd-count") return number(v, info.eventfd_count, 16);
  if (key == "eventfd-id") return number(v, info.eventfd_id);
  if (key == "eventfd-semaphore") {
    uint64_t s = 0;
    CKPT_TRY(number(v, s));
    info.eventfd_semaphore = s != 0;
    return {};
  }
  if (key == "tfd") return epoll_target(line, info);
  if (key == "sigmask") return number(v, info.sigmask, 16);
  if (key == "clockid") return number(v, info.timer_clockid);
  if (key == "ticks") return number(v, info.timer_ticks);
  if (key == "settime flags") return number(v, info.timer_settime_flags, 8);
  if (key == "it_value") return timer_spec(v, info.timer_value);
  if (key == "it_interval") return timer_spec(v, info.timer_interval);
  if (key == "Pid") {
    auto n = parse_i64(v);
    if (!n || *n < -1 || *n > INT32_MAX) return errorf("bad pid '{}'", v);
    info.pidfd_pid = static_cast<int>(*n);
    return {};
  }
  if (key == "lock") {
    info.lock_lines.emplace_back(v);
    return {};
  }
  info.other_lines.emplace_back(line);
  return {};
}

}  // namespace

Result<FdInfo> parse_fdinfo(std::string_view text) {
  FdInfo info;
  std::string_view line;
  for (size_t lineno = 1; next_line(text, line); ++lineno) {
    if (trim(line).empty()) continue;
    if (line.starts_with("inotify ")) {
      info.inotify_lines.emplace_back(line);
      continue;
    }
    if (line.starts_with("fanotify ")) {
      info.fanotify_lines.emplace_back(line);
      continue;
    }
    std::string_view key, value;
    if (!split_key_value(line, key, value)) {
      info.other_lines.emplace_back(line);
      continue;
    }
    Status st = apply_line(line, key, value, info);
    if (!st) return st.error().wrap(fmt::format("line {}", lineno));
  }
  return info;
}

Result<FdInfo> read_fdinfo(pid_t pid, int fd) {
  std::string rel = fmt::format("fdinfo/{}", fd);
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, rel));
  auto r = parse_fdinfo(text);
  if (!r) return parse_error(pid, rel, r.error());
  return r;
}

Result<std::vector<int>> list_fds(pid_t pid) {
  return list_numeric_dir(pid, "fd");
}

Result<std::string> read_fd_link(pid_t pid, int fd) {
  return read_proc_link(pid, fmt::format("fd/{}", fd));
}

std::optional<uint64_t> userfaultfd_features(const FdInfo& info) {
  for (std::string_view line : info.other_lines) {
    std::string_view key, value;
    if (!split_key_value(line, key, value) || key != "API") continue;
    auto first = value.find(':'), second = value.find(':', first + 1);
    if (first == std::string_view::npos || second == std::string_view::npos) return std::nullopt;
    return parse_u64(value.substr(first + 1, second - first - 1), 16);
  }
  return std::nullopt;
}

namespace {

// Gone meanwhile, or closed to us (a process with more privileges than ours, such as this
// machine's init: even root lacking CAP_SYS_RESOURCE may not read its descriptors).
bool skipped(const Error& e) {
  return e.errnum == ENOENT || e.errnum == ESRCH || e.errnum == EACCES || e.errnum == EPERM;
}

// Whether process `pid` holds a userfaultfd with any of `features`.
Result<bool> holds_userfaultfd_with(pid_t pid, uint64_t features) {
  auto fds = list_fds(pid);
  if (!fds) return skipped(fds.error()) ? Result<bool>(false) : fds.error();
  for (int fd : *fds) {
    auto link = read_fd_link(pid, fd);
    if (!link && skipped(link.error())) continue;
    if (!link) return link.error();
    if (*link != "anon_inode:[userfaultfd]") continue;
    auto info = read_fdinfo(pid, fd);
    if (!info && skipped(info.error())) continue;
    if (!info) return info.error();
    auto have = userfaultfd_features(*info);
    if (!have) return errorf("/proc/{}/fdinfo/{}: a userfaultfd without an API line", pid, fd);
    if (*have & features) return true;
  }
  return false;
}

}  // namespace

Result<bool> some_userfaultfd_has(uint64_t features) {
  CKPT_TRY_ASSIGN(auto pids, list_pids());
  for (pid_t pid : pids) {
    CKPT_TRY_ASSIGN(bool found, holds_userfaultfd_with(pid, features));
    if (found) return true;
  }
  return false;
}

}  // namespace ckpt::proc
