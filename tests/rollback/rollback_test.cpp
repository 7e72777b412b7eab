// The rollback API, scenario by scenario (programs/rb_scenarios.cpp and rb_c_api.c), each in a
// process of its own.
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "rb_harness.hpp"

namespace rbtest {
namespace {

const std::string kScenarios = std::string(RB_PROGRAM_DIR) + "/rb_scenarios";
const std::string kThreads = std::string(RB_PROGRAM_DIR) + "/rb_threads";

void expect_pass(const std::vector<std::string>& argv) {
  Child c(argv);
  ASSERT_GT(c.pid(), 0);
  c.close_stdin();
  int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe(st) << "\nstdout:\n"
                                                     << c.out() << "\nstderr:\n"
                                                     << c.err();
  EXPECT_NE(c.out().find("PASS"), std::string::npos) << c.out();
}

void scenario(const char* name) {
  expect_pass({kScenarios, name});
}

void threads_scenario(const char* name) {
  expect_pass({kThreads, name});
}

// Memory of every kind (data, bss, heap, stack, a freed and a new mapping) comes back.
TEST(Rollback, MemoryComesBack) {
  scenario("basic");
}
// Descriptors 1, 2, 3; back to 2 then to 1; 3 is gone after going back to 2; tlongjmp(0).
TEST(Rollback, NestedRollbacksAndDescriptors) {
  scenario("nested");
}
// EINVAL for unknown, dropped and negative descriptors, bad types, bad ranges; EFAULT, ENOSPC.
TEST(Rollback, Refusals) {
  scenario("einval");
}
// 200 tsetjmp() with keep 3: 3 kept, older ones EINVAL, snapshot processes reaped; a pin holds.
TEST(Rollback, RetentionIsBounded) {
  scenario("retention");
}
TEST(Rollback, PersistKeepsRanges) {
  scenario("persist");
}
TEST(Rollback, CacheIsOutOfReachAndNotRolledBack) {
  scenario("cache");
}
// From SIGSEGV, SIGBUS, SIGFPE and SIGABRT handlers; CKPT_SIGTYPE; mask and handlers restored.
TEST(Rollback, FromFaultHandlers) {
  scenario("signals");
}
// A stack overflow caught on the alternate stack: the grown stack goes, the altstack stays.
TEST(Rollback, FromStackOverflow) {
  scenario("overflow");
}
TEST(Rollback, FromAnotherThread) {
  threads_scenario("other_thread");
}
// Four threads, one corrupts the shared state and faults: the invariants hold in all afterwards.
TEST(Rollback, MultiThreadedInvariantsHold) {
  threads_scenario("threads");
}
// A thread that ended since the checkpoint comes back with its tid and can be joined.
TEST(Rollback, EndedThreadIsRecreated) {
  threads_scenario("recreate");
}
// Taking checkpoints never makes nanosleep, poll, epoll_wait or read fail with EINTR.
TEST(Rollback, CheckpointsCauseNoEintr) {
  threads_scenario("eintr");
}
TEST(Rollback, CrashLoopIsReported) {
  scenario("crashloop");
}
// Unmapped, new, reprotected and dropped memory, brk, private copies of a file.
TEST(Rollback, MappingsComeBack) {
  scenario("mappings");
}
TEST(Rollback, BigMemoryComesBackExactly) {
  scenario("big");
}
TEST(Rollback, ForkedChildHasItsOwnCheckpoints) {
  scenario("fork_child");
}
// fds opened since are closed (their locks released), offsets rewound, pipes untouched.
TEST(Rollback, DescriptorsAndLocks) {
  scenario("fds");
}
TEST(Rollback, ChildrenStayAndHelpersAreInvisible) {
  scenario("children");
}
// The C++ wrapper: Persistent, Pin, checkpoint(), rollback(), status(), cache_in/out.
TEST(Rollback, CppWrapper) {
  scenario("cpp");
}
// Four threads take checkpoints at once (each descriptor handed out once); a rollback lands in
// the middle of that, some threads waiting for the lock of the shared area.
TEST(Rollback, ConcurrentCheckpoints) {
  threads_scenario("concurrent");
}
// Signals sent to the process while checkpoints are taken are delivered.
TEST(Rollback, SignalsDuringCheckpointsArrive) {
  threads_scenario("signals_during");
}
// The C header in strict C11 with the paper's names.
TEST(Rollback, CApi) {
  expect_pass({std::string(RB_PROGRAM_DIR) + "/rb_c_api"});
}

// The parent of a program that rolls back from SIGSEGV sees nothing: no SIGCHLD, no wait event,
// the same PID before and after, and one exit at the end.
TEST(Rollback, ParentSeesNothing) {
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &chld, &old), 0);
  {
    // A SIGCHLD left over from an earlier test would be counted.
    siginfo_t si{};
    timespec zero{0, 0};
    while (sigtimedwait(&chld, &si, &zero) > 0) {
    }
  }
  Child c({kScenarios, "quiet"});
  ASSERT_GT(c.pid(), 0);
  ASSERT_TRUE(c.wait_for("after ")) << c.out() << c.err();
  siginfo_t si{};
  EXPECT_EQ(waitid(P_PID, static_cast<id_t>(c.pid()), &si,
                   WEXITED | WSTOPPED | WCONTINUED | WNOHANG | WNOWAIT),
            0);
  EXPECT_EQ(si.si_pid, 0) << "the parent saw a state change";
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGCHLD)) << "SIGCHLD during the rollback";
  std::string pid = std::to_string(c.pid());
  EXPECT_NE(c.out().find("pid " + pid + "\n"), std::string::npos) << c.out();
  EXPECT_NE(c.out().find("after " + pid + "\n"), std::string::npos) << c.out();
  ASSERT_TRUE(c.write("x"));
  int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe(st) << c.err();
  sigpending(&pending);
  EXPECT_TRUE(sigismember(&pending, SIGCHLD));
  timespec zero{0, 0};
  while (sigtimedwait(&chld, &si, &zero) > 0) {
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
}

// A program that closes its stdout after a checkpoint: its reader sees the end of the output
// although the program (and its helper) go on.
TEST(Rollback, HelperHoldsNoStdio) {
  Child c({kScenarios, "stdout_closed"});
  ASSERT_GT(c.pid(), 0);
  EXPECT_TRUE(c.wait_for("checkpointed\n"));
  EXPECT_TRUE(c.wait_stdout_closed(20s)) << "stdout stayed open";
  EXPECT_EQ(kill(c.pid(), 0), 0) << "the program should still run";
  ASSERT_TRUE(c.write("x"));
  int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe(st) << c.err();
}

}  // namespace
}  // namespace rbtest
