// Process trees: `ckpt dump -t ROOT` takes ROOT with all its descendants into one image and
// `ckpt restore` brings every one of them back with its PID and parent. What cannot be saved
// (an event fd shared between two processes) makes the dump fail naming it, with the whole tree
// left running untraced. The ProgramTest cases tree_* cover what each process finds after one
// restore; here: shared memory, refusals, zombies, --leave-running and repeated cycles.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>

#include "counter_output.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

class TreeTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

// Shared anonymous memory and a memfd mapped shared by parent and child: what the parent stored
// before the dump is there after restore, and each one's stores are seen by the other.
class SharedMemory : public TreeTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(SharedMemory, StaysSharedBetweenRestoredProcesses) {
  TestProcess p({program_path("tree_refusal"), GetParam()});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Kinds, SharedMemory, ::testing::Values("shm", "memfd"),
                         [](const auto& info) { return info.param; });

// A child that ended and was not waited for yet is saved as its exit status: after restore it is
// a zombie again under the same parent, and the parent's wait gets that status.
TEST_F(TreeTest, ZombieChildComesBackToBeWaitedFor) {
  TestProcess p({program_path("tree_refusal"), "zombie"});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  ASSERT_EQ(status_field(kids[0], "State").substr(0, 1), "Z");
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  EXPECT_EQ(status_field(kids[0], "State").substr(0, 1), "Z") << "the child is not a zombie";
  EXPECT_EQ(p.tree(), (std::map<pid_t, pid_t>{{kids[0], p.pid()}}));
  EXPECT_TRUE(p.finish());
}

// One event-like file description (eventfd, timerfd, signalfd, epoll, inotify, fanotify) in two
// processes comes back as one description in both (the program checks a flag set by one is seen
// by the other).
class SharedEventFd : public TreeTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(SharedEventFd, StaysOneOpenFileInBothProcesses) {
  TestProcess p({program_path("tree_refusal"), GetParam()});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  EXPECT_EQ(p.tree(), (std::map<pid_t, pid_t>{{kids[0], p.pid()}}));
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Kinds, SharedEventFd,
                         ::testing::Values("eventfd", "timerfd", "signalfd", "epoll", "inotify",
                                           "fanotify"),
                         [](const auto& info) { return info.param; });

// The original tree counts on untraced after a --leave-running dump; killed, it comes back from
// the image where the dump left it and finishes (the parent's wait4 gets the child's status).
TEST_F(TreeTest, LeaveRunningDumpOfTreeThenRestore) {
  TestProcess p({program_path("tree_counter")}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_values(p, 5));
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  long before = counter_values(p.out()).back();
  ASSERT_TRUE(p.dump({"--leave-running"}));
  long after = counter_values(p.out()).back();
  EXPECT_EQ(p.tree(), (std::map<pid_t, pid_t>{{kids[0], p.pid()}}));
  for (pid_t pid : {p.pid(), kids[0]}) {
    EXPECT_TRUE(left_running_untraced(pid, false));
    std::string state = status_field(pid, "State");
    EXPECT_TRUE(!state.empty() && state[0] != 'T' && state[0] != 't')
        << "pid " << pid << " is left in state " << state;
  }
  ASSERT_TRUE(wait_values(p, static_cast<size_t>(after) + 1 + 25))
      << "the original tree stopped counting\n"
      << p.output();
  EXPECT_EQ(sequence_problem(counter_values(p.out()), 0), "") << p.output();
  p.kill_now();
  EXPECT_FALSE(alive(kids[0])) << "kill_now left the child";
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));  // restore() checks the child is back
  wait_values(p, 5, 5s, cut);
  ASSERT_TRUE(p.finish());
  auto restored = counter_values(p.out().substr(cut));
  ASSERT_FALSE(restored.empty()) << p.output();
  EXPECT_GE(restored.front(), before + 1);
  EXPECT_LE(restored.front(), after + 1)
      << "the restored child does not count on from where the dump left it (dumped between "
      << before << " and " << after << ")";
  EXPECT_EQ(sequence_problem(restored, restored.front()), "") << p.output();
}

// Five dump/restore cycles of a parent in wait4 and its counting child: every cycle the whole
// tree is killed and rebuilt; the count never breaks and the final wait4 gets the child's status.
TEST_F(TreeTest, FiveDumpRestoreCyclesOfTree) {
  TestProcess p({program_path("tree_counter")});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  for (int cycle = 0; cycle < 5; ++cycle) {
    size_t have = counter_values(p.out()).size();
    ASSERT_TRUE(wait_values(p, have + 3)) << "cycle " << cycle << ": the child stopped\n"
                                          << p.output();
    ASSERT_TRUE(p.dump()) << "cycle " << cycle;
    ASSERT_FALSE(alive(kids[0])) << "cycle " << cycle << ": the dump left the child running";
    ASSERT_TRUE(p.restore()) << "cycle " << cycle;
    ASSERT_EQ(descendants(p.pid()), kids) << "cycle " << cycle;
  }
  size_t have = counter_values(p.out()).size();
  ASSERT_TRUE(wait_values(p, have + 5)) << "the child stopped after the last restore\n"
                                        << p.output();
  ASSERT_TRUE(p.finish());
  EXPECT_EQ(sequence_problem(counter_values(p.out()), 0), "") << p.output();
}

// The tracer thread ("ckpt[PID/TID]") of each "built in" line of a restore's log, by restored PID.
std::map<pid_t, std::string> builders(const std::string& log) {
  std::map<pid_t, std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    auto at = line.find("restore: pid "), slash = line.find('/'), close = line.find(']');
    if (at == std::string::npos || line.find("built in") == std::string::npos ||
        slash == std::string::npos || close < slash)
      continue;
    out[std::atoi(line.c_str() + at + 13)] = line.substr(slash + 1, close - slash - 1);
  }
  return out;
}

// With two tracer threads (CKPT_TRACER_THREADS=2, whatever the machine), the root and its child
// are built at once by different threads of ckpt, and the tree counts on from where the dump left
// it, its parent still in wait4 for the child.
TEST_F(TreeTest, RootAndChildBuiltOnTwoThreadsCountOn) {
  TestProcess p({program_path("tree_counter")});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  ASSERT_TRUE(wait_values(p, 5));
  ASSERT_TRUE(p.dump());
  long dumped = counter_values(p.out()).back();
  ::setenv("CKPT_TRACER_THREADS", "2", 1);
  ::setenv("CKPT_LOG", "restore=info", 1);
  bool restored = p.restore();
  ::unsetenv("CKPT_TRACER_THREADS");
  ::unsetenv("CKPT_LOG");
  ASSERT_TRUE(restored);
  auto by = builders(p.restore_err());
  ASSERT_EQ(by.size(), 2u) << p.restore_err();
  EXPECT_NE(by[p.pid()], by[kids[0]]) << "one thread built both\n" << p.restore_err();
  EXPECT_EQ(p.tree(), (std::map<pid_t, pid_t>{{kids[0], p.pid()}}));
  size_t have = counter_values(p.out()).size();
  ASSERT_TRUE(wait_values(p, have + 5)) << "the child stopped after the restore\n" << p.output();
  ASSERT_TRUE(p.finish());
  auto values = counter_values(p.out());
  EXPECT_EQ(sequence_problem(values, 0), "") << p.output();
  EXPECT_GE(values.back(), dumped + 5) << "the count did not go on from the dump";
}

// A refusal met in the child, which the dump's second tracer thread reads (CKPT_TRACER_THREADS=2
// on any machine): the dump fails naming it, the root and the child are both left running
// untraced, and the tree then ends as it would have (the child's wait went on unharmed).
TEST_F(TreeTest, ARefusalInTheChildLeavesBothRunningUntraced) {
  TestProcess p({program_path("tree_refusal"), "pipe_lock"});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  ::setenv("CKPT_TRACER_THREADS", "2", 1);
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  ::unsetenv("CKPT_TRACER_THREADS");
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("pid " + std::to_string(kids[0])), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lock on pipe:["), std::string::npos) << r.err;
  sleep_for(100ms);
  // Alive and untraced; running or back in their waits, whichever the scheduler made it by now.
  EXPECT_TRUE(left_running_untraced(p.pid(), false));
  EXPECT_TRUE(left_running_untraced(kids[0], false));
  EXPECT_TRUE(p.finish());
}

// The tree_* programs (each also a ProgramTest case, which compares /proc of the root only):
// here /proc of every process of the tree must read the same after the restore, and the tree
// must have exactly the processes it had.
class TreeProgramTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_P(TreeProgramTest, EveryProcessKeepsProcState) {
  TestProcess p({program_path(GetParam())});
  ASSERT_TRUE(p.wait_ready());
  sleep_for(100ms);  // let every process settle into whatever it waits in
  auto tree = descendants(p.pid());
  ASSERT_FALSE(tree.empty()) << GetParam() << " has no children";
  std::map<pid_t, ProcSnapshot> before;
  for (pid_t pid : tree) before[pid] = snapshot(pid);
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  auto now = descendants(p.pid());
  std::sort(now.begin(), now.end());
  std::sort(tree.begin(), tree.end());
  EXPECT_EQ(now, tree) << "the restored tree has other processes";
  for (auto& [pid, snap] : before)
    for (auto& d : compare_settled(snap, pid)) ADD_FAILURE() << "/proc of pid " << pid << ": " << d;
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Programs, TreeProgramTest,
                         ::testing::Values("tree_wait4", "tree_pipes", "tree_groups",
                                           "tree_socketpair"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace e2e
