// A call that an earlier stop cut short (a --leave-running dump, a job-control stop) is resumed by
// the kernel as restart_syscall, which keeps the call's arguments but not its number, and whose
// restart block a restored thread does not have. The dump names the call from the code before its
// syscall instruction, or where the thread slept before the freeze when the code does not say, so
// that the restored thread repeats it; a call neither names makes the dump fail with a message,
// never an image whose thread would get EINTR.
#include <gtest/gtest.h>

#include "test_process.hpp"

namespace e2e {
namespace {

// Dumps `program` once leaving it running (its calls then resume through restart_syscall), once
// more 100 ms later, and restores it: the program then checks that each call returned what it
// should have (not EINTR, not a timeout, no oversleep).
void dump_twice_restore_and_finish(const char* program) {
  become_subreaper();
  TestProcess p({program_path(program)});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  sleep_for(100ms);
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish());
}

// glibc's poll() loads the call's number right before the instruction.
TEST(SyscallRestart, APollResumedAfterAnEarlierStopIsRepeatedAsAPollAfterTheRestore) {
  dump_twice_restore_and_finish("syscall_poll");
}

// syscall(SYS_futex / SYS_poll / SYS_clock_nanosleep, ...) take the number from a register:
// nothing in the code names the call; where each thread sleeps does. The futex waiter and the
// poller are woken by the main thread after the restore; the sleeper sleeps what was left.
TEST(SyscallRestart, CallsMadeThroughSyscallAreNamedByWhereTheySleepAndRepeatedAfterTheRestore) {
  dump_twice_restore_and_finish("syscall_raw_restarts");
}

// nanosleep(2) through syscall(), beside glibc's nanosleep and an absolute clock_nanosleep, each
// of whose code names its call.
TEST(SyscallRestart, SleepsResumedAfterAnEarlierStopSleepOnlyWhatWasLeftAfterTheRestore) {
  dump_twice_restore_and_finish("syscall_nanosleep");
}

}  // namespace
}  // namespace e2e
