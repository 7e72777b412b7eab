#pragma once
// Timers owned by the process: the three interval timers (setitimer) and every POSIX timer
// (timer_create) with its ID, clock, notification, remaining time and interval. Remaining times
// are saved relative and armed again as late as possible at restore, so that the time the
// process spends as an image does not count. (timerfd lives with the other event fds.)
#include <sys/types.h>

#include <span>

#include "proc/misc.hpp"
#include "resources/context.hpp"

namespace ckpt::timers {

// What a timer's clock ID means. Negative IDs are the kernel's CPU-time clocks: the pid they
// measure (0: the caller) and whether they count one thread or the whole process.
struct ClockInfo {
  bool cpu_time = false;
  bool per_thread = false;
  pid_t pid = 0;     // CPU-time clocks only; 0 is the thread or process that made the timer
  int cpu_kind = 0;  // 0 prof, 1 virt, 2 sched; 3 is a clock fd (dynamic posix clock)
};
ClockInfo decode_clock(int clock_id);

// The sigev_notify value that recreates the notification /proc/PID/timers shows, or an error
// naming the timer when the kind is unknown.
Result<int> sigev_notify_of(const proc::PosixTimer& t);

// Whether ckpt can recreate timer `t` of process `pid` whose threads are `tids` (tids[0] ==
// pid): the clock must measure this process or one of its threads (a timer on the CPU time of
// "the creating thread" is only unambiguous in a single-threaded process) and a thread-directed
// notification must target a living thread.
Status check_restorable(const proc::PosixTimer& t, pid_t pid, std::span<const pid_t> tids);

Status dump(DumpContext& ctx);

// Last, just before the threads get their final state: interval timers, then POSIX timers with
// their original IDs.
Status restore(RestoreContext& ctx);

}  // namespace ckpt::timers
