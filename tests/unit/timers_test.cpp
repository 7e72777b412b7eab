// What the timers resource decides from /proc/PID/timers alone: how a clock ID decodes, which
// sigev_notify recreates a notification, and which timers it refuses to save.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>

#include <vector>

#include "resources/timers.hpp"

namespace ckpt::timers {
namespace {

// The kernel's encoding of CPU-time clocks (include/linux/posix-timers.h): ~pid << 3, bit 2 for
// one thread, low bits for the kind (2 = sched).
constexpr int cpu_clock(pid_t pid, bool thread) {
  return static_cast<int>((~static_cast<unsigned>(pid) << 3) | (thread ? 4u : 0u) | 2u);
}

proc::PosixTimer timer(int id, std::string notify, bool to_tid, pid_t target, int clock) {
  proc::PosixTimer t;
  t.id = id;
  t.signal = SIGRTMIN;
  t.notify = std::move(notify);
  t.notify_thread_id = to_tid;
  t.notify_pid = target;
  t.clock_id = clock;
  return t;
}

TEST(Timers, DecodesClockIds) {
  EXPECT_FALSE(decode_clock(CLOCK_BOOTTIME).cpu_time);
  // What the kernel stores for CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID (-6, -2).
  ClockInfo process = decode_clock(-6);
  EXPECT_TRUE(process.cpu_time);
  EXPECT_FALSE(process.per_thread);
  EXPECT_EQ(process.pid, 0);
  EXPECT_EQ(process.cpu_kind, 2);
  ClockInfo thread = decode_clock(-2);
  EXPECT_TRUE(thread.per_thread);
  EXPECT_EQ(thread.pid, 0);
  // pthread_getcpuclockid / clock_getcpuclockid name the thread or process.
  ClockInfo named = decode_clock(cpu_clock(4243, true));
  EXPECT_TRUE(named.per_thread);
  EXPECT_EQ(named.pid, 4243);
  EXPECT_EQ(decode_clock(cpu_clock(4242, false)).pid, 4242);
}

TEST(Timers, MapsNotificationsToSigevNotify) {
  EXPECT_EQ(*sigev_notify_of(timer(0, "signal", false, 42, 1)), SIGEV_SIGNAL);
  EXPECT_EQ(*sigev_notify_of(timer(0, "signal", true, 43, 1)), SIGEV_THREAD_ID);
  EXPECT_EQ(*sigev_notify_of(timer(0, "none", false, 42, 1)), SIGEV_NONE);
  EXPECT_EQ(*sigev_notify_of(timer(0, "thread", false, 42, 1)), SIGEV_THREAD);
  auto bad = sigev_notify_of(timer(7, "bogus", false, 42, 1));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("POSIX timer 7"), std::string::npos);
}

TEST(Timers, RefusesTimersItCannotRecreate) {
  const std::vector<pid_t> one{42};
  const std::vector<pid_t> two{42, 43};
  EXPECT_TRUE(check_restorable(timer(0, "signal", false, 42, CLOCK_MONOTONIC), 42, two).ok());
  EXPECT_TRUE(check_restorable(timer(0, "signal", true, 43, CLOCK_REALTIME), 42, two).ok());
  EXPECT_TRUE(check_restorable(timer(0, "none", false, 42, -6), 42, two).ok());
  EXPECT_TRUE(check_restorable(timer(0, "none", false, 42, cpu_clock(43, true)), 42, two).ok());
  EXPECT_TRUE(check_restorable(timer(0, "none", false, 42, cpu_clock(42, false)), 42, two).ok());
  // "The creating thread's CPU time" is unambiguous only with one thread.
  EXPECT_TRUE(check_restorable(timer(0, "none", false, 42, -2), 42, one).ok());
  auto ambiguous = check_restorable(timer(3, "none", false, 42, -2), 42, two);
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.error().message.find("POSIX timer 3"), std::string::npos);
  EXPECT_FALSE(check_restorable(timer(0, "signal", true, 44, CLOCK_REALTIME), 42, two).ok());
  EXPECT_FALSE(check_restorable(timer(0, "none", false, 42, cpu_clock(99, false)), 42, two).ok());
  EXPECT_FALSE(check_restorable(timer(0, "none", false, 42, cpu_clock(99, true)), 42, two).ok());
  EXPECT_FALSE(check_restorable(timer(0, "none", false, 42, -5), 42, two).ok());  // clock fd
}

}  // namespace
}  // namespace ckpt::timers
