// Incremental generations (`ckpt dump --incremental`): a generation after a few pages changed is
// a small fraction of a full one, restore composes the chain into the latest state, and a damaged
// parent fails verification and restore naming it.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "counter_output.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

std::vector<fs::path> generations(const fs::path& store) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(store))
    if (e.path().filename().string().starts_with("gen-")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t bytes_of(const fs::path& gen) {
  uint64_t total = 0;
  for (auto& e : fs::directory_iterator(gen)) total += e.file_size();
  return total;
}

std::string manifest(const fs::path& gen) {
  std::stringstream s;
  s << std::ifstream(gen / "manifest").rdbuf();
  return s.str();
}

// Sends SIGUSR1 and waits for the program to say it rewrote its pages for `epoch`.
::testing::AssertionResult next_epoch(const TestProcess& p, int epoch) {
  ::kill(p.pid(), SIGUSR1);
  std::string want = "EPOCH " + std::to_string(epoch) + "\n";
  for (int i = 0; i < 1000; ++i) {
    if (p.out().find(want) != std::string::npos) return ::testing::AssertionSuccess();
    sleep_for(10ms);
  }
  return ::testing::AssertionFailure() << "no " << want << p.output();
}

CkptResult dump(const TestProcess& p, std::vector<std::string> extra) {
  std::vector<std::string> args{"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_ckpt(args, 60s);
}

// A full generation, then one incremental after each of `epochs` epochs; the process runs on.
::testing::AssertionResult dump_a_chain(const TestProcess& p, int epochs) {
  auto full = dump(p, {"--leave-running"});
  if (full.exit_code() != 0) return ::testing::AssertionFailure() << full.describe();
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    if (auto next = next_epoch(p, epoch); !next) return next;
    auto r = dump(p, {"--leave-running", "--incremental"});
    if (r.exit_code() != 0) return ::testing::AssertionFailure() << r.describe();
    if (r.err.find("pages changed (page hashes)") == std::string::npos)
      return ::testing::AssertionFailure() << "not an incremental by page hashes: " << r.err;
  }
  return ::testing::AssertionSuccess();
}

TEST(Incremental, OnlyChangedPagesAreStoredAndRestoreGivesTheLatestState) {
  become_subreaper();
  TestProcess p({program_path("incr_pages"), "32"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(dump_a_chain(p, 2));
  ASSERT_TRUE(next_epoch(p, 3));
  ASSERT_TRUE(p.dump({"--incremental"}));  // the process ends with this one
  auto gens = generations(p.store());
  ASSERT_EQ(gens.size(), 4u);
  uint64_t full_bytes = bytes_of(gens[0]);
  EXPECT_GT(full_bytes, 32u << 20);
  for (size_t i = 1; i < gens.size(); ++i) {
    // 8 pages of 8192 changed, plus the program's own stack and data (16-18 pages), its process
    // image (19 KiB) and an index of the changes (1 KiB; a whole one would be 128 KiB).
    EXPECT_LT(bytes_of(gens[i]) * 200, full_bytes) << gens[i];
    EXPECT_NE(manifest(gens[i]).find("\"parent\": \"" + gens[i - 1].filename().string() + "\""),
              std::string::npos)
        << manifest(gens[i]);
  }
  auto verified = run_ckpt({"verify", p.store().string()}, 60s);
  EXPECT_EQ(verified.exit_code(), 0) << verified.describe();
  ASSERT_TRUE(p.restore());
  ASSERT_TRUE(p.finish());
  EXPECT_NE(p.out().find("AT EPOCH 3\n"), std::string::npos) << p.output();
}

TEST(Incremental, ADamagedParentFailsVerifyAndRestoreNamingItAndRestoreFallsBack) {
  become_subreaper();
  TestProcess p({program_path("incr_pages"), "8"});
  ASSERT_TRUE(p.wait_ready());
  for (int i = 0; i < 2; ++i) {
    auto full = dump(p, {"--leave-running"});
    ASSERT_EQ(full.exit_code(), 0) << full.describe();
  }
  ASSERT_TRUE(next_epoch(p, 1));
  ASSERT_TRUE(p.dump({"--incremental"}));
  auto gens = generations(p.store());
  ASSERT_EQ(gens.size(), 3u);
  std::string parent = gens[1].filename().string(), child = gens[2].filename().string();
  {
    // One byte of the parent's pages (its data file starts with a 16-byte header).
    std::fstream f(gens[1] / "data", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(16 + 4096 * 3 + 7);
    char c = static_cast<char>(f.get());
    f.seekp(16 + 4096 * 3 + 7);
    f.put(static_cast<char>(c ^ 0x10));
  }
  auto verified = run_ckpt({"verify", p.store().string()}, 60s);
  EXPECT_NE(verified.exit_code(), 0) << verified.describe();
  EXPECT_NE(verified.err.find("gen " + child + ": parent: gen " + parent + ": section"),
            std::string::npos)
      << verified.describe();
  auto restored = run_ckpt({"restore", "-D", p.store().string(), "--generation", child, "-d"}, 60s);
  EXPECT_NE(restored.exit_code(), 0) << restored.describe();
  EXPECT_NE(restored.err.find("gen " + parent), std::string::npos) << restored.describe();
  EXPECT_EQ(std::count(restored.err.begin(), restored.err.end(), '\n'), 1) << restored.err;
  // Without --generation, restore passes over the child and its damaged parent to the first
  // full generation: the state before epoch 1.
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  ASSERT_TRUE(p.finish());
  EXPECT_NE(p.out().find("AT EPOCH 0\n"), std::string::npos) << p.output();
  // Removed, the parent is named as missing, before anything is restored.
  fs::remove_all(gens[1]);
  restored = run_ckpt({"restore", "-D", p.store().string(), "--generation", child, "-d"}, 60s);
  EXPECT_NE(restored.exit_code(), 0) << restored.describe();
  EXPECT_NE(restored.err.find("parent gen " + parent + " is missing"), std::string::npos)
      << restored.describe();
}

// Big enough that the chain's pages are copied while the kernel is still allocating them
// (page_chain::fill, memory::populate_while): every page must still come from the generation that
// stores it, the parent's pages in the big first pass and the changed ones after.
TEST(Incremental, ABigChainCopiedWhileItIsPopulatedGivesTheLatestState) {
  become_subreaper();
  TestProcess p({program_path("incr_pages"), "320"});
  ASSERT_TRUE(p.wait_ready(60s));  // 320 MiB touched for the first time: slow beside other tests
  ASSERT_TRUE(dump_a_chain(p, 2));
  ASSERT_TRUE(next_epoch(p, 3));
  ASSERT_TRUE(p.dump({"--incremental"}));
  ::setenv("CKPT_LOG", "memory=debug", 1);
  bool restored = p.restore();
  ::unsetenv("CKPT_LOG");
  ASSERT_TRUE(restored);
  EXPECT_NE(p.restore_err().find("pieces while the pages are copied"), std::string::npos)
      << "the chain was not copied while populating\n"
      << p.restore_err();
  ASSERT_TRUE(p.finish(60s)) << p.output();
  EXPECT_NE(p.out().find("AT EPOCH 3\n"), std::string::npos) << p.output();
}

// Issue 13: a chain of 20 generations (a full one, then one incremental after each epoch),
// restored from its middle and from its end, gives each time the state of that epoch. Its
// indexes are of both kinds: after 8 indexes of changes in a row the next one is whole.
TEST(Incremental, ATwentyGenerationChainRestoresFromTheMiddleAndTheEnd) {
  become_subreaper();
  TestProcess p({program_path("incr_pages"), "16"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(dump_a_chain(p, 19));
  auto gens = generations(p.store());
  ASSERT_EQ(gens.size(), 20u);
  for (int epoch : {10, 19}) {
    p.kill_now();
    std::string gen = gens[epoch].filename().string();
    // Its stdout has grown since that generation.
    ASSERT_TRUE(p.restore({"--generation", gen, "--accept-changed-files"}));
    ASSERT_TRUE(p.finish());
    // Written where that generation's stdout ended: no other restore printed this epoch.
    EXPECT_NE(p.out().find("AT EPOCH " + std::to_string(epoch) + "\n"), std::string::npos)
        << gen << "\n"
        << p.output();
  }
}

// A tree: each process's pages are composed from its own index (proc.PID.memory.index).
TEST(Incremental, ATreeRestoresFromAChainAndCountsOn) {
  become_subreaper();
  TestProcess p({program_path("tree_counter")}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_values(p, 5));
  auto full = dump(p, {"--leave-running"});
  ASSERT_EQ(full.exit_code(), 0) << full.describe();
  ASSERT_TRUE(wait_values(p, counter_values(p.out()).size() + 5));
  ASSERT_TRUE(p.dump({"--incremental"}));
  auto gens = generations(p.store());
  ASSERT_EQ(gens.size(), 2u);
  std::string m = manifest(gens[1]);
  EXPECT_NE(m.find("\"parent\": \"" + gens[0].filename().string() + "\""), std::string::npos) << m;
  EXPECT_NE(m.find(".memory.index\""), std::string::npos) << m;  // the child's index
  EXPECT_LT(bytes_of(gens[1]), bytes_of(gens[0]));
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore());  // checks the child is back under its parent
  ASSERT_TRUE(wait_values(p, 5, 5s, cut)) << p.output();
  ASSERT_TRUE(p.finish());
  EXPECT_EQ(sequence_problem(counter_values(p.out()), 0), "") << p.output();
}

}  // namespace
}  // namespace e2e
