// A process dumped and restored many times in a row, and a dump that leaves it running: the
// counter program's output shows any gap, repeat or lost state.
#include <gtest/gtest.h>
#include <signal.h>

#include "counter_output.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

// Waits until the counter printed at least `count` values.
bool wait_values(const TestProcess& p, size_t count, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (counter_values(p.out()).size() >= count) return true;
    sleep_for(5ms);
  }
  return false;
}

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
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (counter_values(p.out().substr(cut)).size() < 5 &&
         std::chrono::steady_clock::now() < deadline)
    sleep_for(5ms);
  ASSERT_TRUE(p.finish());
  auto restored = counter_values(p.out().substr(cut));
  ASSERT_FALSE(restored.empty()) << p.output();
  EXPECT_GE(restored.front(), before + 1) << "killed at " << killed_at;
  EXPECT_LE(restored.front(), after + 1) << "the restored counter is not where the dump left it "
                                         << "(dumped between " << before << " and " << after
                                         << ", original killed at " << killed_at << ")";
  EXPECT_EQ(sequence_problem(restored, restored.front()), "") << p.output();
}

}  // namespace
}  // namespace e2e
