// `ckpt run --incremental`: checkpoints after the first full one store only changed pages, a
// crash is recovered from an incremental generation (its chain composed), and retention keeps the
// parents the kept generations need, so the program still ends with the right result.
#include <gtest/gtest.h>

#include <regex>

#include "mem_moves_run.hpp"
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
  ASSERT_TRUE(signal_child(store, SIGKILL));
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
  ASSERT_TRUE(signal_child(store, SIGKILL));
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), std::to_string(n * (n + 1) / 2) + "\n");
  EXPECT_EQ(count(sv.err(), "recovered from generation"), 2u) << sv.err();
  EXPECT_EQ(count(sv.err(), "skipping generation"), 0u) << sv.err();
  auto [code, text] = run_cmd({CKPT_CLI_PATH, "verify", store.string()});
  EXPECT_EQ(code, 0) << text;
}

// Write tracking (the default with --incremental), with mem_moves (mem_moves_run.hpp).
TEST(SupervisorIncremental, WriteTrackingMissesNoChangeAndRecoveryGivesEveryPageBack) {
  TempDir d;
  auto store = d.path() / "store";
  Proc sv(d.path(), mem_moves_run(store, {"--incremental"}));
  std::string gen = checkpoint_mem_moves(sv, store);
  std::string manifest = slurp(store / gen / "manifest");
  // An incremental generation whose unchanged pages were known without reading them.
  EXPECT_NE(manifest.find("\"parent\": \"gen-"), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"pages_unread\""), std::string::npos) << manifest;
  // And at least one whose few written pages were read while the program was stopped (no
  // snapshot): how many are few depends on the steps made between two checkpoints.
  EXPECT_GE(generations_with(store, "held_bytes"), 1u);
  expect_recovered_from(sv, store, gen);
}

}  // namespace
}  // namespace ckpt::test
