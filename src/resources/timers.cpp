#include "resources/timers.hpp"

#include <linux/prctl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <algorithm>
#include <vector>

#include "resources/signals.hpp"

namespace ckpt::timers {
namespace {

// Linux 6.16: while on, timer_create takes the ID to give the new timer from *timer_id.
#ifndef PR_TIMER_CREATE_RESTORE_IDS
constexpr int PR_TIMER_CREATE_RESTORE_IDS = 77;
constexpr int PR_TIMER_CREATE_RESTORE_IDS_OFF = 0;
constexpr int PR_TIMER_CREATE_RESTORE_IDS_ON = 1;
#endif

constexpr int kSigevSignal = 0;
constexpr int kSigevNone = 1;
constexpr int kSigevThread = 2;
constexpr int kSigevThreadId = 4;

// Scratch layout at restore: sigevent, then the timer ID, then the itimerspec.
using arch::KernelSigevent;
using arch::TimerValue;
constexpr uint64_t kIdOffset = sizeof(KernelSigevent);
constexpr uint64_t kSpecOffset = kIdOffset + 16;
constexpr size_t kScratchSize = kSpecOffset + sizeof(TimerValue);

Result<schema::PosixTimerRecord> posix_timer_record(const proc::PosixTimer& t) {
  CKPT_TRY_ASSIGN(int notify, sigev_notify_of(t));
  schema::PosixTimerRecord r;
  r.id = t.id;
  r.clock = t.clock_id;
  r.notify = notify;
  r.signo = t.signal;
  r.sigev_value = t.sigev_value;
  r.tid = notify == kSigevThreadId ? t.notify_pid : 0;
  return r;
}

// One injected session reads every timer: the interval timers, then each POSIX timer's
// remaining time and interval with timer_gettime.
Status read_values(DumpContext& ctx, schema::TimersRecord& timers) {
  return ctx.with_remote(
      0, sizeof(TimerValue), [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
        TimerValue v;
        for (int which = ITIMER_REAL; which <= ITIMER_PROF; ++which) {
          CKPT_TRY(rs.call("getitimer", SYS_getitimer, {uint64_t(which), s.addr}));
          CKPT_TRY(read_remote(ctx.pid, s.addr, &v, sizeof(v)));
          timers.itimers[which] = {{v.interval[0], v.interval[1]}, {v.value[0], v.value[1]}};
        }
        for (auto& t : timers.posix) {
          CKPT_TRY(rs.call("timer_gettime", SYS_timer_gettime, {uint64_t(t.id), s.addr}));
          CKPT_TRY(read_remote(ctx.pid, s.addr, &v, sizeof(v)));
          t.interval = {v.interval[0], v.interval[1]};
          t.remaining = {v.value[0], v.value[1]};
        }
        return {};
      });
}

bool alarm_pending(const schema::SignalsRecord& signals) {
  return std::any_of(signals.pending.begin(), signals.pending.end(), [](const schema::Bytes& b) {
    return signals::siginfo_signo(b.data(), b.size()) == SIGALRM;
  });
}

// The kernel re-arms a periodic ITIMER_REAL only when its SIGALRM is taken: dumped between the
// two, it reads 0 left with its interval still set. Armed to fire at once, its signal merges
// with the pending one restored before it, and taking that signal re-arms it as it would have.
schema::TimeSpec itimer_value(int which, const schema::ItimerRecord& t, bool alarm_pending) {
  if (which == ITIMER_REAL && t.value.zero() && !t.interval.zero() && alarm_pending) return {0, 1};
  return t.value;
}

Status restore_itimers(RestoreContext& ctx, const std::array<schema::ItimerRecord, 3>& itimers) {
  bool alarm = alarm_pending(ctx.rec->signals);
  for (int which = 0; which < 3; ++which) {
    const auto& t = itimers[which];
    schema::TimeSpec value = itimer_value(which, t, alarm);
    if (value.zero()) continue;
    TimerValue v{{t.interval.sec, t.interval.frac}, {value.sec, value.frac}};
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &v, sizeof(v)));
    CKPT_TRY(
        ctx.main_remote->call("setitimer", SYS_setitimer, {uint64_t(which), ctx.scratch.addr, 0}));
  }
  return {};
}

Status create_posix_timer(RestoreContext& ctx, const schema::PosixTimerRecord& t) {
  auto& rs = *ctx.main_remote;
  int32_t id = t.id;
  KernelSigevent ev{};
  ev.value = t.sigev_value;
  ev.signo = t.signo;
  ev.notify = t.notify;
  ev.tid = t.tid;
  uint64_t at = ctx.scratch.addr;
  CKPT_TRY(write_remote(ctx.pid, at, &ev, sizeof(ev)));
  CKPT_TRY(write_remote(ctx.pid, at + kIdOffset, &id, sizeof(id)));
  CKPT_TRY(rs.call("timer_create", SYS_timer_create,
                   {static_cast<uint64_t>(t.clock), at, at + kIdOffset}));
  int32_t got = -1;
  CKPT_TRY(read_remote(ctx.pid, at + kIdOffset, &got, sizeof(got)));
  if (got != id)
    return errorf("restore pid {}: POSIX timer {} came back with ID {}", ctx.pid, id, got);
  if (t.remaining.zero()) return {};  // disarmed
  TimerValue v{{t.interval.sec, t.interval.frac}, {t.remaining.sec, t.remaining.frac}};
  CKPT_TRY(write_remote(ctx.pid, at + kSpecOffset, &v, sizeof(v)));
  CKPT_TRY(rs.call("timer_settime", SYS_timer_settime, {uint64_t(id), 0, at + kSpecOffset, 0}));
  return {};
}

Status restore_posix_timers(RestoreContext& ctx,
                            const std::vector<schema::PosixTimerRecord>& posix) {
  if (posix.empty()) return {};
  if (ctx.scratch.size < kScratchSize)
    return errorf("restore pid {}: scratch too small for POSIX timers", ctx.pid);
  auto& rs = *ctx.main_remote;
  CKPT_TRY_ASSIGN(long on, rs.call_raw(SYS_prctl, {PR_TIMER_CREATE_RESTORE_IDS,
                                                   PR_TIMER_CREATE_RESTORE_IDS_ON}));
  if (on < 0)
    return sys_error(static_cast<int>(-on),
                     fmt::format("restore pid {}: the kernel cannot give {} POSIX timer(s) their "
                                 "IDs back (prctl PR_TIMER_CREATE_RESTORE_IDS needs Linux 6.16)",
                                 ctx.pid, posix.size()));
  // Created in ID order so that the kernel's next free ID ends above all of them, as it was.
  for (auto& t : posix) CKPT_TRY(create_posix_timer(ctx, t));
  CKPT_TRY(rs.call("prctl(PR_TIMER_CREATE_RESTORE_IDS_OFF)", SYS_prctl,
                   {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF}));
  return {};
}

}  // namespace

ClockInfo decode_clock(int clock_id) {
  ClockInfo c;
  if (clock_id >= 0) return c;
  c.cpu_time = true;
  c.pid = static_cast<pid_t>(~(clock_id >> 3));
  c.per_thread = (clock_id & 4) != 0;
  c.cpu_kind = clock_id & 3;
  return c;
}

Result<int> sigev_notify_of(const proc::PosixTimer& t) {
  if (t.notify == "signal") return t.notify_thread_id ? kSigevThreadId : kSigevSignal;
  if (t.notify_thread_id)
    return errorf("POSIX timer {}: unknown notification '{}' to a thread", t.id, t.notify);
  if (t.notify == "none") return kSigevNone;
  if (t.notify == "thread") return kSigevThread;
  return errorf("POSIX timer {}: unknown notification '{}'", t.id, t.notify);
}

Status check_restorable(const proc::PosixTimer& t, pid_t pid, std::span<const pid_t> tids) {
  auto is_thread = [&](pid_t tid) {
    return std::find(tids.begin(), tids.end(), tid) != tids.end();
  };
  ClockInfo c = decode_clock(t.clock_id);
  if (c.cpu_time && c.cpu_kind == 3)
    return errorf(
        "pid {}: POSIX timer {} runs on a clock device (clock ID {}), which ckpt cannot "
        "save",
        pid, t.id, t.clock_id);
  if (c.cpu_time && c.per_thread && c.pid == 0 && tids.size() > 1)
    return errorf(
        "pid {}: POSIX timer {} measures the CPU time of the thread that created it, "
        "which /proc does not name in a process with {} threads",
        pid, t.id, tids.size());
  if (c.cpu_time && c.per_thread && c.pid != 0 && !is_thread(c.pid))
    return errorf("pid {}: POSIX timer {} measures the CPU time of thread {}, not one of its own",
                  pid, t.id, c.pid);
  if (c.cpu_time && !c.per_thread && c.pid != 0 && c.pid != pid)
    return errorf("pid {}: POSIX timer {} measures the CPU time of another process ({})", pid, t.id,
                  c.pid);
  CKPT_TRY_ASSIGN(int notify, sigev_notify_of(t));
  if (notify == kSigevThreadId && !is_thread(t.notify_pid))
    return errorf("pid {}: POSIX timer {} signals thread {}, which is not one of its threads", pid,
                  t.id, t.notify_pid);
  return {};
}

Status dump(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(auto timers, proc::read_timers(ctx.pid));
  std::vector<pid_t> tids;
  for (auto& t : ctx.threads) tids.push_back(t.tid);
  std::sort(timers.begin(), timers.end(), [](auto& a, auto& b) { return a.id < b.id; });
  schema::TimersRecord& out = ctx.rec.timers;
  out.posix.clear();
  for (auto& t : timers) {
    CKPT_TRY(check_restorable(t, ctx.pid, tids));
    CKPT_TRY_ASSIGN(auto r, posix_timer_record(t));
    out.posix.push_back(r);
  }
  CKPT_TRY(read_values(ctx, out));
  // A periodic ITIMER_REAL keeps running while the process is frozen. Read expired (0 left) with
  // no SIGALRM among the pending signals read before it, it fired in between: its SIGALRM is
  // queued now, and without it the restored timer would never be re-armed (the kernel re-arms
  // it when that signal is taken). It cannot re-arm while the process is frozen, so the queue
  // read again agrees with the timer.
  const auto& real = out.itimers[ITIMER_REAL];
  if (real.value.zero() && !real.interval.zero() && !alarm_pending(ctx.rec.signals))
    CKPT_TRY(signals::reread_shared_pending(ctx));
  return {};
}

Status restore(RestoreContext& ctx) {
  CKPT_TRY(restore_itimers(ctx, ctx.rec->timers.itimers));
  return restore_posix_timers(ctx, ctx.rec->timers.posix);
}

}  // namespace ckpt::timers
