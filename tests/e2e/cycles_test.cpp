// A process dumped and restored many times in a row, and a dump that leaves it running: the
// counter program's output shows any gap, repeat or lost state.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "counter_output.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

TEST(Cycles, TwentyDumpRestoreCyclesKeepCounting) {
  become_subreaper();
  TestProcess p({program_path("counter")});
  ASSERT_TRUE(p.wait_ready());
  for (int cycle = 0; cycle < 20; ++cycle) {
    size_t have = counter_values(p.out()).size();
    ASSERT_TRUE(wait_values(p, have + 2)) << "cycle " << cycle << ": the counter stopped\n"
                                          << p.output();
    ASSERT_TRUE(p.dump()) << "cycle " << cycle;
    ASSERT_TRUE(p.restore()) << "cycle " << cycle;
  }
  size_t have = counter_values(p.out()).size();
  ASSERT_TRUE(wait_values(p, have + 5)) << "the counter stopped after the last restore\n"
                                        << p.output();
  ASSERT_TRUE(p.finish());
  auto values = counter_values(p.out());
  EXPECT_EQ(sequence_problem(values, 0), "") << p.output();
}

// Threads created and exiting while the dump stops the others: every dump succeeds, and the
// process restored from the last one goes on with its threads.
TEST(Cycles, ThreadsComingAndGoingDoNotFailDumps) {
  become_subreaper();
  TestProcess p({program_path("thread_churn")});
  ASSERT_TRUE(p.wait_ready());
  for (int i = 0; i < 15; ++i) {
    ASSERT_TRUE(p.dump({"--leave-running"})) << "dump " << i;
    sleep_for(10ms);
  }
  ASSERT_TRUE(p.dump()) << "the final dump";
  ASSERT_TRUE(p.restore());
  size_t have = counter_values(p.out()).size();
  ASSERT_TRUE(wait_values(p, have + 15)) << "the counter stopped after restore\n" << p.output();
  ASSERT_TRUE(p.finish());
  EXPECT_EQ(sequence_problem(counter_values(p.out()), 0), "") << p.output();
}

TEST(LeaveRunning, OriginalRunsOnAndImageRestoresDumpTimeState) {
  become_subreaper();
  TestProcess p({program_path("counter")}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_values(p, 5));
  long before = counter_values(p.out()).back();
  ASSERT_TRUE(p.dump({"--leave-running"}));
  long after = counter_values(p.out()).back();
  EXPECT_EQ(status_field(p.pid(), "TracerPid"), "0");
  std::string state = status_field(p.pid(), "State");
  EXPECT_TRUE(!state.empty() && state[0] != 'T' && state[0] != 't') << "state " << state;
  ASSERT_TRUE(wait_values(p, static_cast<size_t>(after) + 1 + 25))
      << "the original stopped counting\n"
      << p.output();
  EXPECT_EQ(sequence_problem(counter_values(p.out()), 0), "")
      << "the original skipped or repeated\n"
      << p.output();
  p.kill_now();
  long killed_at = counter_values(p.out()).back();
  size_t cut = p.out().size();
  // The output file grew since the dump; that is expected here.
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  wait_values(p, 5, 5s, cut);
  ASSERT_TRUE(p.finish());
  auto restored = counter_values(p.out().substr(cut));
  ASSERT_FALSE(restored.empty()) << p.output();
  EXPECT_GE(restored.front(), before + 1) << "killed at " << killed_at;
  EXPECT_LE(restored.front(), after + 1) << "the restored counter is not where the dump left it "
                                         << "(dumped between " << before << " and " << after
                                         << ", original killed at " << killed_at << ")";
  EXPECT_EQ(sequence_problem(restored, restored.front()), "") << p.output();
}

// `ckpt dump` SIGKILLed at many moments: the target must go on as if nothing happened (never
// left stopped, traced or with borrowed registers), and the store must hold only whole
// generations. A single process, and a tree (the child counts, the parent waits in wait4).
class KillDuringDump : public ::testing::TestWithParam<std::string> {};

TEST_P(KillDuringDump, TargetIsNeverLeftStoppedOrTraced) {
  become_subreaper();
  TestProcess p({program_path(GetParam())}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_values(p, 3));
  std::vector<pid_t> tree = descendants(p.pid());
  tree.push_back(p.pid());
  char tmpl[] = "/tmp/ckpt-killdump-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string store = std::string(tmpl) + "/store";
  std::string pid_text = std::to_string(p.pid());
  // One complete dump first: the store exists however early the kills land (on a loaded machine
  // ckpt may not get as far as creating it), and this generation must survive them all.
  auto first = run_ckpt({"dump", "-t", pid_text, "-D", store, "--leave-running"});
  ASSERT_EQ(first.exit_code(), 0) << first.describe();
  for (int i = 0; i < 15; ++i) {
    pid_t dumper = fork();
    if (dumper == 0) {
      int null_fd = open("/dev/null", O_RDWR);
      dup2(null_fd, 1);
      dup2(null_fd, 2);
      execl(ckpt_path().c_str(), "ckpt", "dump", "-t", pid_text.c_str(), "-D", store.c_str(),
            "--leave-running", static_cast<char*>(nullptr));
      _exit(127);
    }
    sleep_for(std::chrono::milliseconds(4 * i));
    kill(dumper, SIGKILL);
    waitpid(dumper, nullptr, 0);
    // The killed command's own dumper child finishes on its own (it may not even have attached
    // yet): it comes to us, the subreaper; wait for it to end, then look.
    for (pid_t orphan : children_of_self())
      if (orphan != p.pid()) waitpid(orphan, nullptr, 0);
    for (pid_t pid : tree) {
      auto deadline = std::chrono::steady_clock::now() + 5s;
      while (status_field(pid, "TracerPid") != "0" && std::chrono::steady_clock::now() < deadline)
        sleep_for(10ms);
      EXPECT_EQ(status_field(pid, "TracerPid"), "0") << "round " << i << ", pid " << pid;
      std::string state = status_field(pid, "State");
      EXPECT_TRUE(!state.empty() && state[0] != 'T' && state[0] != 't')
          << "round " << i << ", pid " << pid << ": " << state;
    }
  }
  size_t seen = counter_values(p.out()).size();
  ASSERT_TRUE(wait_values(p, seen + 5)) << "the process stopped counting\n" << p.output();
  EXPECT_EQ(sequence_problem(counter_values(p.out()), 0), "") << p.output();
  auto show = run_ckpt({"show", store});
  EXPECT_EQ(show.exit_code(), 0) << show.describe();
  EXPECT_EQ(show.out.find("CORRUPT"), std::string::npos) << show.out;
  auto verify = run_ckpt({"verify", store});
  EXPECT_EQ(verify.exit_code(), 0) << verify.describe();
  p.kill_now();
  fs::remove_all(tmpl);
}

INSTANTIATE_TEST_SUITE_P(Targets, KillDuringDump, ::testing::Values("counter", "tree_counter"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace e2e
