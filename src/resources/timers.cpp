#include "resources/timers.hpp"

#include <linux/prctl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <algorithm>
#include <vector>

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

// The kernel's struct sigevent on x86-64 (64 bytes; the tid is the first word of the union).
struct KernelSigevent {
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

// struct itimerspec / struct itimerval on x86-64: interval first, then value, as (sec, nsec|usec).
struct TimerValue {
  int64_t interval[2];
  int64_t value[2];
};

// Scratch layout at restore: sigevent, then the timer ID, then the itimerspec.
constexpr uint64_t kIdOffset = sizeof(KernelSigevent);
constexpr uint64_t kSpecOffset = kIdOffset + 16;
constexpr size_t kScratchSize = kSpecOffset + sizeof(TimerValue);

json pair(const int64_t v[2]) {
  return {v[0], v[1]};
}

Result<json> posix_timer_json(const proc::PosixTimer& t) {
  CKPT_TRY_ASSIGN(int notify, sigev_notify_of(t));
  return json{{"id", t.id},
              {"clock", t.clock_id},
              {"notify", notify},
              {"signo", t.signal},
              {"sigev_value", t.sigev_value},
              {"tid", notify == kSigevThreadId ? t.notify_pid : 0}};
}

// One injected session reads every timer: the interval timers, then each POSIX timer's
// remaining time and interval with timer_gettime.
Status read_values(DumpContext& ctx, json& itimers, json& posix) {
  return ctx.with_remote(
      0, sizeof(TimerValue), [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
        TimerValue v;
        for (int which = ITIMER_REAL; which <= ITIMER_PROF; ++which) {
          CKPT_TRY(rs.call("getitimer", SYS_getitimer, {uint64_t(which), s.addr}));
          CKPT_TRY(read_remote(ctx.pid, s.addr, &v, sizeof(v)));
          itimers.push_back({v.interval[0], v.interval[1], v.value[0], v.value[1]});
        }
        for (auto& t : posix) {
          CKPT_TRY(rs.call("timer_gettime", SYS_timer_gettime, {t["id"].get<uint64_t>(), s.addr}));
          CKPT_TRY(read_remote(ctx.pid, s.addr, &v, sizeof(v)));
          t["interval"] = pair(v.interval);
          t["remaining"] = pair(v.value);
        }
        return {};
      });
}

Status restore_itimers(RestoreContext& ctx, const json& itimers) {
  for (int which = 0; which < static_cast<int>(itimers.size()); ++which) {
    uint64_t v[4] = {itimers[which][0], itimers[which][1], itimers[which][2], itimers[which][3]};
    if (v[2] == 0 && v[3] == 0) continue;
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, v, sizeof(v)));
    CKPT_TRY(
        ctx.main_remote->call("setitimer", SYS_setitimer, {uint64_t(which), ctx.scratch.addr, 0}));
  }
  return {};
}

Status create_posix_timer(RestoreContext& ctx, const json& t) {
  auto& rs = *ctx.main_remote;
  int32_t id = t["id"];
  KernelSigevent ev{};
  ev.value = t["sigev_value"];
  ev.signo = t["signo"];
  ev.notify = t["notify"];
  ev.tid = t["tid"];
  uint64_t at = ctx.scratch.addr;
  CKPT_TRY(write_remote(ctx.pid, at, &ev, sizeof(ev)));
  CKPT_TRY(write_remote(ctx.pid, at + kIdOffset, &id, sizeof(id)));
  CKPT_TRY(rs.call("timer_create", SYS_timer_create,
                   {uint64_t(t["clock"].get<int>()), at, at + kIdOffset}));
  int32_t got = -1;
  CKPT_TRY(read_remote(ctx.pid, at + kIdOffset, &got, sizeof(got)));
  if (got != id)
    return errorf("restore pid {}: POSIX timer {} came back with ID {}", ctx.pid, id, got);
  TimerValue v{{t["interval"][0], t["interval"][1]}, {t["remaining"][0], t["remaining"][1]}};
  if (v.value[0] == 0 && v.value[1] == 0) return {};  // disarmed
  CKPT_TRY(write_remote(ctx.pid, at + kSpecOffset, &v, sizeof(v)));
  CKPT_TRY(rs.call("timer_settime", SYS_timer_settime, {uint64_t(id), 0, at + kSpecOffset, 0}));
  return {};
}

Status restore_posix_timers(RestoreContext& ctx, const json& posix) {
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
  json posix = json::array();
  for (auto& t : timers) {
    CKPT_TRY(check_restorable(t, ctx.pid, tids));
    CKPT_TRY_ASSIGN(json j, posix_timer_json(t));
    posix.push_back(std::move(j));
  }
  json itimers = json::array();
  CKPT_TRY(read_values(ctx, itimers, posix));
  ctx.image["timers"] = {{"itimers", std::move(itimers)}, {"posix", std::move(posix)}};
  return {};
}

Status restore(RestoreContext& ctx) {
  const json& image = *ctx.image;
  // Images written before timers had a section of their own kept the interval timers under
  // "process".
  if (!image.contains("timers")) return restore_itimers(ctx, image["process"]["itimers"]);
  CKPT_TRY(restore_itimers(ctx, image["timers"]["itimers"]));
  return restore_posix_timers(ctx, image["timers"]["posix"]);
}

}  // namespace ckpt::timers
