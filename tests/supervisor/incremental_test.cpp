// `ckpt run --incremental`: checkpoints after the first full one store only changed pages, a
// crash is recovered from an incremental generation (its chain composed), and retention keeps the
// parents the kept generations need, so the program still ends with the right result.
#include <gtest/gtest.h>

#include <regex>

#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

TEST(SupervisorIncremental, RecoveryComesFromAnIncrementalGeneration) {
  TempDir d;
  auto store = d.path() / "store";
  const long n = 8000;
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0.2", "--min-uptime",
                     "0.2", "--keep", "2", "--incremental", "--full-every", "1000", "--",
                     CKPT_SV_MT_SUM, std::to_string(n), "2"});
  ASSERT_TRUE(eventually([&] { return count(sv.err(), "(incremental on gen-") >= 3; })) << sv.err();
  pid_t child = run_state(store).value("child_pid", 0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return count(sv.err(), "recovered from ") >= 1; })) << sv.err();
  std::smatch m;
  std::string err = sv.err();
  ASSERT_TRUE(std::regex_search(err, m, std::regex("recovered from generation (gen-[0-9-]+)")))
      << err;
  // The generation it came back from holds only changed pages and names its parent.
  std::string manifest = slurp(store / m[1].str() / "manifest");
  EXPECT_NE(manifest.find("\"parent\": \"gen-"), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"pages_changed\""), std::string::npos) << manifest;
  // More checkpoints build on the restored program, retention runs after each.
  size_t before = count(sv.err(), "(incremental on gen-");
  ASSERT_TRUE(eventually([&] { return count(sv.err(), "(incremental on gen-") >= before + 3; }))
      << sv.err();
  child = run_state(store).value("child_pid", 0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), std::to_string(n * (n + 1) / 2) + "\n");
  EXPECT_EQ(count(sv.err(), "recovered from generation"), 2u) << sv.err();
  EXPECT_EQ(count(sv.err(), "skipping generation"), 0u) << sv.err();
  auto [code, text] = run_cmd({CKPT_CLI_PATH, "verify", store.string()});
  EXPECT_EQ(code, 0) << text;
}

// Write tracking (the default with --incremental): the program changes its memory in every way a
// tracker could miss (pages written, dropped and read back as zero, moved away and back, unmapped
// and mapped again, a growing heap) and checks all of it after each step; a checkpoint that took
// a stale page from its parent would make it print BAD after the recovery.
TEST(SupervisorIncremental, WriteTrackingMissesNoChangeAndRecoveryGivesEveryPageBack) {
  TempDir d;
  auto store = d.path() / "store";
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0", "--min-uptime", "0.2",
                     "--incremental", "--", CKPT_SV_MEM_MOVES, "500"});
  ASSERT_TRUE(eventually([&] { return count(sv.out(), "step ") >= 20; })) << sv.err();
  for (int i = 1; i <= 4; ++i) {
    ASSERT_EQ(::kill(sv.pid(), SIGUSR1), 0);
    ASSERT_TRUE(eventually([&] { return run_state(store).value("requests_served", 0) >= i; }))
        << sv.err();
    size_t steps = count(sv.out(), "step ");
    ASSERT_TRUE(eventually([&] { return count(sv.out(), "step ") >= steps + 15; })) << sv.err();
  }
  std::string gen = run_state(store).value("last_generation", "");
  std::string manifest = slurp(store / gen / "manifest");
  // An incremental generation whose unchanged pages were known without reading them.
  EXPECT_NE(manifest.find("\"parent\": \"gen-"), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"pages_unread\""), std::string::npos) << manifest;
  // And at least one whose few written pages were read while the program was stopped (no
  // snapshot): how many are few depends on the steps made between two checkpoints.
  size_t held = 0;
  for (auto& e : fs::directory_iterator(store))
    if (e.path().filename().string().starts_with("gen-"))
      held += slurp(e.path() / "manifest").find("\"held_bytes\"") != std::string::npos;
  EXPECT_GE(held, 1u);
  ASSERT_EQ(::kill(run_state(store).value("child_pid", 0), SIGKILL), 0);
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  std::string out = sv.out(), err = sv.err();
  EXPECT_EQ(count(err, "recovered from generation " + gen), 1u) << err;
  EXPECT_EQ(count(out, "started\n"), 1u) << out;  // from the checkpoint, not from its start
  EXPECT_EQ(count(out, "BAD"), 0u) << out;
  EXPECT_NE(out.find("done 500 steps\n"), std::string::npos) << err;
  auto [code, text] = run_cmd({CKPT_CLI_PATH, "verify", store.string()});
  EXPECT_EQ(code, 0) << text;
}

}  // namespace
}  // namespace ckpt::test
