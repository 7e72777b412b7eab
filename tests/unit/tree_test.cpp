// What the process-tree resource does inside puppets (joining groups and sessions, ending as a
// zombie) and how it reads the shape of an image. The puppet side runs in forked children.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "resources/tree.hpp"

namespace ckpt::tree {
namespace {

// Runs `fn` in a forked child; its return value is the child's exit code.
int in_child(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

schema::ProcessRecord proc(pid_t pid, pid_t ppid) {
  schema::ProcessRecord p;
  p.pid = pid;
  p.tree.ppid = ppid;
  return p;
}

schema::ProcessRecord plan(schema::SessionPlan session, schema::GroupPlan group, pid_t leader = 0) {
  schema::ProcessRecord p;
  p.tree.session = session;
  p.tree.group = group;
  p.tree.leader = leader;
  return p;
}

using schema::GroupPlan;
using schema::SessionPlan;

TEST(TreeShape, ParentsComeBeforeChildren) {
  auto s = shape({proc(10, 1), proc(11, 10), proc(12, 11), proc(13, 10)});
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->pids, (std::vector<pid_t>{10, 11, 12, 13}));
  EXPECT_EQ(s->parent, (std::vector<int>{-1, 0, 1, 0}));
}

TEST(TreeShape, ChildBeforeItsParentIsRefused) {
  auto s = shape({proc(10, 1), proc(12, 11), proc(11, 10)});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("before its parent 11"), std::string::npos) << s.error().message;
}

TEST(TreeJoin, NewSessionAndNewGroup) {
  auto session = plan(SessionPlan::lead, GroupPlan::inherit);
  EXPECT_EQ(in_child([&] {
              if (!join_in_puppet(session, false, false).ok()) return 1;
              return ::getsid(0) == ::getpid() && ::getpgid(0) == ::getpid() ? 0 : 2;
            }),
            0);
  auto group = plan(SessionPlan::inherit, GroupPlan::lead);
  EXPECT_EQ(in_child([&] {
              pid_t sid = ::getsid(0);
              if (!join_in_puppet(group, false, false).ok()) return 1;
              return ::getpgid(0) == ::getpid() && ::getsid(0) == sid ? 0 : 2;
            }),
            0);
}

TEST(TreeJoin, ShellJobRootStaysInTheCallersGroup) {
  auto root = plan(SessionPlan::inherit, GroupPlan::lead);
  pid_t mine = ::getpgid(0);
  EXPECT_EQ(in_child([&] {
              if (!join_in_puppet(root, true, true).ok()) return 1;
              return ::getpgid(0) == mine ? 0 : 2;
            }),
            0);
}

TEST(TreeJoin, JoiningAGroupThatIsGoneFailsNamingIt) {
  auto join = plan(SessionPlan::inherit, GroupPlan::join, 999999);
  EXPECT_EQ(in_child([&] {
              Status st = join_in_puppet(join, false, false);
              return !st.ok() && st.error().message.find("group 999999") != std::string::npos ? 0
                                                                                              : 1;
            }),
            0);
}

TEST(TreeZombie, EndsWithTheSavedExitCodeAndName) {
  pid_t pid = ::fork();
  if (pid == 0) end_as_zombie({42 << 8, "zombie-test"});
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
  char comm[64] = {};
  FILE* f = ::fopen(fmt::format("/proc/{}/comm", pid).c_str(), "r");
  ASSERT_NE(f, nullptr);
  ASSERT_NE(::fgets(comm, sizeof comm, f), nullptr);
  ::fclose(f);
  EXPECT_STREQ(comm, "zombie-test\n");
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 42);
}

TEST(TreeZombie, DiesOfTheSavedSignalWithoutACore) {
  pid_t pid = ::fork();
  if (pid == 0) {
    // Even a program that caught or blocked the signal must die of it.
    ::signal(SIGSEGV, SIG_IGN);
    end_as_zombie({SIGSEGV | 0x80, ""});
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  EXPECT_FALSE(WCOREDUMP(status));
}

TEST(TreeZombie, SettleLeavesTheZombieToWaitForAndNoSigchld) {
  EXPECT_EQ(in_child([] {
              sigset_t chld;
              sigemptyset(&chld);
              sigaddset(&chld, SIGCHLD);
              ::sigprocmask(SIG_BLOCK, &chld, nullptr);
              pid_t z = ::fork();
              if (z == 0) ::_exit(7);
              if (!settle_zombies({z}).ok()) return 1;
              sigset_t pending;
              ::sigpending(&pending);
              if (sigismember(&pending, SIGCHLD)) return 2;
              int status = 0;
              if (::waitpid(z, &status, WNOHANG) != z || WEXITSTATUS(status) != 7) return 3;
              return 0;
            }),
            0);
}

}  // namespace
}  // namespace ckpt::tree
