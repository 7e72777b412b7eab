// timerfd: clock, remaining time, interval and unread expirations. A periodic timerfd counts only
// its first unread expiration until the program reads it or asks for its time: an injected
// timerfd_gettime adds the periods missed since, so that fdinfo shows what a read would return.
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>

#include "resources/context.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

// From <linux/timerfd.h>, which clashes with <sys/timerfd.h>. Needs CONFIG_CHECKPOINT_RESTORE.
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

struct TimerfdPayload {
  int32_t clockid = CLOCK_MONOTONIC;
  uint64_t ticks = 0;
  schema::TimeSpec value, interval;
  template <class V>
  void visit(V& v) {
    v("clockid", clockid), v("ticks", ticks), v("value", value), v("interval", interval);
  }
};

Result<ScopedFd> create(const schema::OpenFile& of, const TimerfdPayload& t) {
  ScopedFd fd(::timerfd_create(t.clockid, TFD_CLOEXEC));
  if (!fd) return sys_error(fmt::format("timerfd_create for open file {}", of.id));
  itimerspec spec{};
  spec.it_value = {t.value.sec, t.value.frac};
  spec.it_interval = {t.interval.sec, t.interval.frac};
  bool armed = !t.value.zero();
  // A periodic timer that expired again after the injected gettime shows no remaining time, yet
  // its next period is running: at most one interval away.
  if (!armed && t.ticks > 0) {
    spec.it_value = spec.it_interval;
    armed = !t.interval.zero();
  }
  if (armed && ::timerfd_settime(fd.get(), 0, &spec, nullptr) < 0)
    return sys_error(fmt::format("timerfd_settime for open file {}", of.id));
  // Expirations not yet read; arming resets the count, so it is set after.
  if (t.ticks > 0 && ::ioctl(fd.get(), TFD_IOC_SET_TICKS, &t.ticks) < 0)
    return sys_error(fmt::format("ioctl(TFD_IOC_SET_TICKS, {}) for open file {}", t.ticks, of.id));
  CKPT_TRY(set_status_flags(fd.get(), of.flags, "timerfd"));
  return fd;
}

class TimerfdKind final : public FdKind {
 public:
  std::string_view name() const override { return "timerfd"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:[timerfd]";
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY(env.ctx.with_remote(
        0, sizeof(itimerspec), [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
          CKPT_TRY(rs.call("timerfd_gettime", SYS_timerfd_gettime, {uint64_t(p.fd), s.addr}));
          return {};
        }));
    CKPT_TRY_ASSIGN(proc::FdInfo info, proc::read_fdinfo(p.pid, p.fd));
    auto value = info.timer_value.value_or(proc::TimerSpec{});
    auto interval = info.timer_interval.value_or(proc::TimerSpec{});
    TimerfdPayload t{info.timer_clockid.value_or(CLOCK_MONOTONIC),
                     info.timer_ticks.value_or(0),
                     {value.sec, value.nsec},
                     {interval.sec, interval.nsec}};
    of.payload = schema::encode(t);
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(TimerfdPayload t, payload_of<TimerfdPayload>(*of));
      CKPT_TRY_ASSIGN(out[of->id], create(*of, t));
    }
    return {};
  }
};

}  // namespace

const FdKind& timerfd_kind() {
  static const TimerfdKind kind;
  return kind;
}

}  // namespace ckpt::fds
