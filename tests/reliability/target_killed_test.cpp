// The program being dumped SIGKILLed at each of the dumper's kill points (CKPT_FAULT_KILL_PID): a
// program may die at any moment of its checkpoint, e.g. inside the injected clone that makes its
// snapshot, while the dumper waits for it. The dump must end, never wait forever for a process
// that is gone: with success when the program's state was already taken, else with one line;
// nothing the dump made in the program (its snapshot process, the intermediate child) may stay
// behind, and the generation made before stays restorable.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "rel_util.hpp"

namespace rel {
namespace {

std::vector<std::string> dump_args(pid_t pid, const fs::path& store) {
  return {"dump", "-t", std::to_string(pid), "-D", store.string(), "--leave-running"};
}

// Our children once the dump's leftovers (orphaned to us, a child subreaper) had time to end.
std::vector<pid_t> children_left(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = live_children_of_self();
  while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    left = live_children_of_self();
  }
  return left;
}

TEST(TargetKilled, AtTheDumpersKillPointsTheDumpEndsAndLeavesNothing) {
  become_subreaper();
  TempDir dir;
  auto store = dir / "store";
  std::vector<std::string> names;
  {
    TestProcess p({program_path("fault_target"), "8", "3"});
    ASSERT_TRUE(p.wait_ready());
    auto count_file = dir / "points";
    auto r = run_ckpt_env(dump_args(p.pid(), store), {"CKPT_FAULT_COUNT=" + count_file.string()});
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    names = read_points(count_file);
  }
  auto before = generations(store);
  ASSERT_EQ(before.size(), 1u);
  auto at = choose_points(names, scaled(40, 1000000));
  size_t failed = 0, succeeded = 0;
  for (long n : at) {
    std::string where = "point " + std::to_string(n) + " (" + names[n - 1] + ")";
    TestProcess p({program_path("fault_target"), "8", "3"});
    ASSERT_TRUE(p.wait_ready()) << where;
    auto r = run_ckpt_env(dump_args(p.pid(), store),
                          {"CKPT_FAULT_KILL_AT=" + std::to_string(n),
                           "CKPT_FAULT_KILL_PID=" + std::to_string(p.pid())},
                          30s);
    ASSERT_EQ(r.err.find("(" + ckpt_path() + " timed out"), std::string::npos)
        << "the dump waits forever for the program killed at " << where;
    if (r.exit_code() == 0) {
      ++succeeded;
    } else {
      ++failed;
      EXPECT_EQ(r.exit_code(), 1) << where << r.describe();
      EXPECT_NE(r.err.find(std::to_string(p.pid())), std::string::npos)
          << "the error does not name the program, at " << where << r.describe();
    }
    p.kill_now();
    auto left = children_left(5s);
    EXPECT_TRUE(left.empty()) << left.size() << " processes left after the program died at "
                              << where << ", first " << left.front();
    if (::testing::Test::HasFailure()) break;
  }
  auto verify = run_ckpt({"verify", store.string()}, 60s);
  EXPECT_EQ(verify.exit_code(), 0) << verify.describe();
  auto after = generations(store);
  EXPECT_TRUE(std::includes(after.begin(), after.end(), before.begin(), before.end()))
      << "the generation made before the kills is gone";
  std::printf(
      "program killed at %zu of %zu dump points: %zu dumps failed with a line, %zu "
      "succeeded (state already taken)\n%s",
      at.size(), names.size(), failed, succeeded, summarize_kinds(names, at).c_str());
}

}  // namespace
}  // namespace rel
