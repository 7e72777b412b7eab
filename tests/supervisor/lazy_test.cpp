// `ckpt run --lazy`: a crashed program is restored without its memory and runs at once while the
// supervisor's page server fills it; the program checks every page as it goes. A generation with
// a damaged page kills the restored program rather than feed it the page, and the run goes on
// from an older generation.
#include <gtest/gtest.h>

#include <memory>
#include <regex>

#include "support/damage.hpp"
#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

const std::regex kComplete(
    "memory of pid [0-9]+ complete in [0-9.]+ ms: ([0-9]+) pages on demand \\([0-9]+ faults\\), "
    "([0-9]+) in the background");

// Asks the supervisor for `n` checkpoints, one after the other; their generations.
std::vector<std::string> request_checkpoints(Proc& sv, const fs::path& store, int n) {
  std::vector<std::string> gens;
  for (int i = 1; i <= n; ++i) {
    EXPECT_EQ(::kill(sv.pid(), SIGUSR1), 0);
    EXPECT_TRUE(eventually([&] { return run_state(store).value("requests_served", 0) >= i; }))
        << sv.err();
    gens.push_back(run_state(store).value("last_generation", ""));
  }
  return gens;
}

// `mem_steps MIB STEPS` under `ckpt run --lazy`, checkpointed only on request, once it has
// written its pages a first time.
std::unique_ptr<Proc> start_mem_steps(const TempDir& d, const std::string& mib,
                                      const std::string& steps) {
  auto sv = std::make_unique<Proc>(
      d.path(), std::vector<std::string>{CKPT_CLI_PATH, "run", "--lazy", "--dir",
                                         d.path() / "store", "--interval", "0", "--min-uptime",
                                         "0.2", "--", CKPT_SV_MEM_STEPS, mib, steps});
  EXPECT_TRUE(eventually([&] { return sv->out() == "filled\n"; })) << sv->err();
  return sv;
}

TEST(SupervisorLazy, CrashIsRecoveredWhileTheMemoryArrivesAndEveryPageIsRight) {
  TempDir d;
  auto store = d.path() / "store";
  auto run = start_mem_steps(d, "64", "150");
  Proc& sv = *run;
  auto gens = request_checkpoints(sv, store, 1);
  ASSERT_TRUE(signal_child(store, SIGKILL));
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  std::string err = sv.err();
  // Came back from the checkpoint (not a fresh start), and its 64 MiB arrived through the server.
  EXPECT_EQ(count(err, "recovered from generation " + gens[0]), 1u) << err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, kComplete)) << err;
  EXPECT_GE(std::stoul(m[1].str()) + std::stoul(m[2].str()), 16384u) << err;
  // Every step checked every page: a wrong one would have ended it with 3, a crash to recover.
  EXPECT_EQ(count(err, "crash:"), 1u) << err;
  EXPECT_EQ(sv.out(), "filled\ndone 150 steps\n") << err;
}

TEST(SupervisorLazy, DamagedPageMakesTheRunGoOnFromAnOlderGeneration) {
  TempDir d;
  auto store = d.path() / "store";
  auto run = start_mem_steps(d, "32", "200");
  Proc& sv = *run;
  auto gens = request_checkpoints(sv, store, 2);
  ASSERT_NE(gens[0], gens[1]);
  ASSERT_TRUE(test_support::flip_byte_in_middle(test_support::pages_file(store / gens[1])));
  ASSERT_TRUE(signal_child(store, SIGKILL));
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  std::string err = sv.err();
  EXPECT_NE(err.find("generation " + gens[1] + " failed while its memory arrived"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("does not match its page index"), std::string::npos) << err;
  EXPECT_NE(err.find("recovered from generation " + gens[0]), std::string::npos) << err;
  EXPECT_EQ(count(err, "crash:"), 2u) << err;  // ours, and the server's kill
  EXPECT_EQ(sv.out(), "filled\ndone 200 steps\n") << err;
}

}  // namespace
}  // namespace ckpt::test
