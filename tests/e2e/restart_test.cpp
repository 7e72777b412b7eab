// A call that an earlier stop cut short (a --leave-running dump, a job-control stop) is resumed by
// the kernel as restart_syscall, which keeps the call's arguments but not its number, and whose
// restart block a restored thread does not have. The dump names the call from the code before its
// syscall instruction so that the restored thread repeats it; a call its code does not name makes
// the dump fail with a message, never an image whose thread would get EINTR.
#include <gtest/gtest.h>

#include "test_process.hpp"

namespace e2e {
namespace {

// glibc's poll() loads the call's number right before the instruction.
TEST(SyscallRestart, APollResumedAfterAnEarlierStopIsRepeatedAsAPollAfterTheRestore) {
  become_subreaper();
  TestProcess p({program_path("syscall_poll")});
  ASSERT_TRUE(p.wait_ready());
  sleep_for(100ms);
  ASSERT_TRUE(p.dump({"--leave-running"}));  // the poller now resumes through restart_syscall
  sleep_for(100ms);
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  // The restored poller gets the readiness the main thread causes, not EINTR.
  EXPECT_TRUE(p.finish());
}

// syscall(SYS_nanosleep, ...) takes the number from a register: nothing in the code names it.
TEST(SyscallRestart, ACallItsCodeDoesNotNameMakesTheDumpFailAndTheProgramSleepsOn) {
  become_subreaper();
  TestProcess p({program_path("syscall_nanosleep")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_NE(r.exit_code(), 0) << r.describe();
  EXPECT_NE(r.err.find("restart_syscall"), std::string::npos) << r.err;
  // Left running as before: every thread still sleeps exactly its time.
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
