// The tracer of a process is often its parent too (`ckpt run` checkpoints its own program): what
// the tracer learns through ptrace must not take away what the parent learns through wait().
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "ptrace/tracee.hpp"

namespace ckpt::ptrace {
namespace {

TEST(Tracee, AProcessEndingWhileTracedLeavesItsExitStatusToItsParent) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char byte;
    (void)!::read(go[0], &byte, 1);
    ::_exit(7);
  }
  ::close(go[0]);
  {
    auto t = Tracee::seize(child, PTRACE_O_TRACESYSGOOD);
    ASSERT_TRUE(t.ok()) << t.error().message;
    ASSERT_TRUE(t->interrupt().ok());
    // It ends while stopped by its tracer, as a program told to quit during a checkpoint.
    ASSERT_EQ(::write(go[1], "x", 1), 1);
    ASSERT_TRUE(t->resume().ok());
    StopInfo stop;
    bool ended = false;
    for (int i = 0; i < 100 && !ended; ++i) {
      auto s = t->wait_stop();
      ASSERT_TRUE(s.ok()) << s.error().message;
      stop = *s;
      ended = stop.exited();
      if (!ended) {
        ASSERT_TRUE(t->resume().ok());
      }
    }
    ASSERT_TRUE(stop.exited());
    EXPECT_TRUE(WIFEXITED(stop.status));
    EXPECT_EQ(WEXITSTATUS(stop.status), 7);
    t->release();
  }
  ::close(go[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child) << "the tracer took the parent's exit status";
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

}  // namespace
}  // namespace ckpt::ptrace
