// arch::restarted_call: which call a thread in restart_syscall resumes, read from the bytes
// before its syscall instruction, or (restarted_call_sleeping_in) from where it sleeps.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <cstdint>
#include <vector>

#include "arch/x86_64/syscall_restart.hpp"

namespace ckpt::arch {
namespace {

TEST(RestartedCall, GlibcsLoadOfTheNumberRightBeforeTheInstructionNamesTheCall) {
  // mov $0xe6,%eax (clock_nanosleep), as glibc's __clock_nanosleep has it
  std::vector<uint8_t> code = {0x8b, 0x74, 0x24, 0x0c, 0xb8, 0xe6, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), SYS_clock_nanosleep);
  // mov $0xca,%eax; xor $0x80,%sil (futex, with an instruction between)
  code = {0xba, 0x02, 0x00, 0x00, 0x00, 0xb8, 0xca, 0x00, 0x00, 0x00, 0x40, 0x80, 0xf6, 0x80};
  EXPECT_EQ(restarted_call(code), SYS_futex);
  // mov $0x7,%rax (poll), the 64-bit form
  code = {0x48, 0xc7, 0xc0, 0x07, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), SYS_poll);
}

TEST(RestartedCall, ANumberFromARegisterOrACallWithoutARestartBlockNamesNothing) {
  // glibc's syscall(): mov %rdi,%rax ... mov 0x8(%rsp),%r9
  std::vector<uint8_t> code = {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89,
                               0xd6, 0x48, 0x89, 0xca, 0x4d, 0x89, 0xc2, 0x4d,
                               0x89, 0xc8, 0x4c, 0x8b, 0x4c, 0x24, 0x08};
  EXPECT_EQ(restarted_call(code), 0);
  // mov $0x0,%eax (read): repeated by the kernel without a restart block, never in restart_syscall
  code = {0xb8, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), 0);
  EXPECT_EQ(restarted_call({}), 0);
}

TEST(RestartedCall, TheLoadNearestTheInstructionCounts) {
  // mov $0x23,%eax (nanosleep), then mov $0xe6,%eax (clock_nanosleep) nearer
  std::vector<uint8_t> code = {0xb8, 0x23, 0x00, 0x00, 0x00, 0xb8, 0xe6, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), SYS_clock_nanosleep);
}

// The names are the wchan of threads sleeping in restart_syscall on this machine's kernel.
TEST(RestartedCallSleepingIn, TheKernelFunctionNamesTheCallAndTheFirstArgumentTheSleep) {
  constexpr uint64_t kRequest = 0x7f7f228c9960;  // a struct timespec's address
  EXPECT_EQ(restarted_call_sleeping_in("futex_do_wait", kRequest), SYS_futex);
  EXPECT_EQ(restarted_call_sleeping_in("poll_schedule_timeout.constprop.0", 0), SYS_poll);
  EXPECT_EQ(restarted_call_sleeping_in("hrtimer_nanosleep", kRequest), SYS_nanosleep);
  // clock_nanosleep(CLOCK_MONOTONIC, ...) sleeps where nanosleep does: its clock id tells
  EXPECT_EQ(restarted_call_sleeping_in("hrtimer_nanosleep", 1), SYS_clock_nanosleep);
  // Resumed, both sleep in a scheduler function that wchan skips, entered straight from the call
  EXPECT_EQ(restarted_call_sleeping_in("do_syscall_64", kRequest), SYS_nanosleep);
  EXPECT_EQ(restarted_call_sleeping_in("do_syscall_64", 1), SYS_clock_nanosleep);
  EXPECT_EQ(restarted_call_sleeping_in("do_cpu_nanosleep", 2), SYS_clock_nanosleep);
  EXPECT_EQ(restarted_call_sleeping_in("alarmtimer_do_nsleep", 9), SYS_clock_nanosleep);
}

TEST(RestartedCallSleepingIn, AnyOtherPlaceNamesNothing) {
  EXPECT_EQ(restarted_call_sleeping_in("", 0), 0);
  EXPECT_EQ(restarted_call_sleeping_in("0", 0), 0);  // what a running thread shows
  EXPECT_EQ(restarted_call_sleeping_in("pipe_read", 0), 0);
  EXPECT_EQ(restarted_call_sleeping_in("do_signal_stop", 0), 0);
  EXPECT_EQ(restarted_call_sleeping_in("do_syscall_64_slow", 0), 0);
}

}  // namespace
}  // namespace ckpt::arch
