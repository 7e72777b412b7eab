#include "resources/event_fds.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/scoped_fd.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::event_fds {

std::optional<Status> describe(std::string_view link, const proc::FdInfo& info, json& j) {
  if (link == "anon_inode:[eventfd]") {
    j["type"] = "eventfd";
    j["count"] = info.eventfd_count.value_or(0);
    j["semaphore"] = info.eventfd_semaphore.value_or(false);
    return Status{};
  }
  if (link == "anon_inode:[signalfd]") {
    j["type"] = "signalfd";
    j["sigmask"] = info.sigmask.value_or(0);
    return Status{};
  }
  if (link == "anon_inode:[timerfd]") {
    auto value = info.timer_value.value_or(proc::TimerSpec{});
    auto interval = info.timer_interval.value_or(proc::TimerSpec{});
    j["type"] = "timerfd";
    j["clockid"] = info.timer_clockid.value_or(CLOCK_MONOTONIC);
    j["ticks"] = info.timer_ticks.value_or(0);
    j["value"] = {value.sec, value.nsec};
    j["interval"] = {interval.sec, interval.nsec};
    return Status{};
  }
  if (link == "anon_inode:[eventpoll]") {
    j["type"] = "epoll";
    json targets = json::array();
    for (auto& t : info.epoll_targets) targets.push_back({t.tfd, t.events, t.data});
    j["targets"] = targets;
    return Status{};
  }
  return std::nullopt;
}

namespace {

// From <linux/timerfd.h>, which clashes with <sys/timerfd.h>. Needs CONFIG_CHECKPOINT_RESTORE.
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

int nonblock_cloexec(int open_flags, int nonblock, int cloexec) {
  return ((open_flags & O_NONBLOCK) ? nonblock : 0) | ((open_flags & O_CLOEXEC) ? cloexec : 0);
}

Result<int> create_timerfd(const json& j, int flags) {
  int fd =
      ::timerfd_create(j["clockid"].get<int>(), nonblock_cloexec(flags, TFD_NONBLOCK, TFD_CLOEXEC));
  if (fd < 0) return sys_error("timerfd_create");
  ScopedFd owner(fd);
  itimerspec spec{};
  spec.it_value = {j["value"][0].get<time_t>(), j["value"][1].get<long>()};
  spec.it_interval = {j["interval"][0].get<time_t>(), j["interval"][1].get<long>()};
  uint64_t ticks = j["ticks"];
  bool armed = spec.it_value.tv_sec || spec.it_value.tv_nsec;
  // A periodic timer that expired again after settle_timerfds shows no remaining time, yet its
  // next period is running: at most one interval away.
  if (!armed && ticks > 0) {
    spec.it_value = spec.it_interval;
    armed = spec.it_value.tv_sec || spec.it_value.tv_nsec;
  }
  if (armed && ::timerfd_settime(fd, 0, &spec, nullptr) < 0)
    return sys_error(fmt::format("timerfd_settime for fd {}", j["fd"].get<int>()));
  // Expirations not yet read; arming resets the count, so it is set after.
  if (ticks > 0 && ::ioctl(fd, TFD_IOC_SET_TICKS, &ticks) < 0)
    return sys_error(
        fmt::format("ioctl(TFD_IOC_SET_TICKS, {}) for timerfd fd {}", ticks, j["fd"].get<int>()));
  return owner.release();
}

}  // namespace

Status settle_timerfds(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(std::vector<int> fds, proc::list_fds(ctx.pid));
  std::vector<int> timerfds;
  for (int fd : fds) {
    auto link = proc::read_proc_link(ctx.pid, fmt::format("fd/{}", fd));
    if (link.ok() && *link == "anon_inode:[timerfd]") timerfds.push_back(fd);
  }
  if (timerfds.empty()) return {};
  return ctx.with_remote(
      0, sizeof(itimerspec), [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
        for (int fd : timerfds)
          CKPT_TRY(rs.call("timerfd_gettime", SYS_timerfd_gettime, {uint64_t(fd), s.addr}));
        return {};
      });
}

Result<int> create(const json& j) {
  int flags = j["flags"];
  std::string type = j["type"];
  int fd = -1;
  if (type == "eventfd") {
    int f = nonblock_cloexec(flags, EFD_NONBLOCK, EFD_CLOEXEC) |
            (j["semaphore"].get<bool>() ? EFD_SEMAPHORE : 0);
    fd = ::eventfd(0, f);
    uint64_t count = j["count"];
    if (fd >= 0 && count > 0 && ::write(fd, &count, sizeof(count)) != sizeof(count))
      return sys_error("refill eventfd");
  } else if (type == "signalfd") {
    uint64_t mask = j["sigmask"];
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig <= 64; ++sig)
      if (mask & (uint64_t{1} << (sig - 1))) sigaddset(&set, sig);
    fd = ::signalfd(-1, &set, nonblock_cloexec(flags, SFD_NONBLOCK, SFD_CLOEXEC));
  } else if (type == "timerfd") {
    return create_timerfd(j, flags);
  } else if (type == "epoll") {
    fd = ::epoll_create1((flags & O_CLOEXEC) ? EPOLL_CLOEXEC : 0);
  } else {
    return errorf("fd {}: unknown event descriptor type {}", j["fd"].get<int>(), type);
  }
  if (fd < 0) return sys_error(fmt::format("create {} for fd {}", type, j["fd"].get<int>()));
  return fd;
}

Status register_epoll_targets(const json& fds) {
  for (auto& f : fds) {
    if (f["type"] != "epoll") continue;
    for (auto& t : f["targets"]) {
      epoll_event ev{};
      ev.events = t[1];
      ev.data.u64 = t[2];
      if (::epoll_ctl(f["fd"].get<int>(), EPOLL_CTL_ADD, t[0].get<int>(), &ev) < 0)
        return sys_error(
            fmt::format("epoll fd {}: add fd {}", f["fd"].get<int>(), t[0].get<int>()));
    }
  }
  return {};
}

}  // namespace ckpt::event_fds
