#pragma once
// mem_moves under `ckpt run`: the program changes its memory in every way a tracker could miss
// (pages written, dropped and read back as zero, moved away and back, unmapped and mapped again,
// a growing heap) and checks all of it after each step; a checkpoint that took a stale page
// would make it print BAD after the recovery.
#include <gtest/gtest.h>

#include "sv_test_util.hpp"

namespace ckpt::test {

// Starts mem_moves (until the test ends it) under `ckpt run --dir STORE --interval 0 FLAGS` and
// asks for four checkpoints while it runs, 15 steps apart. Returns the newest generation.
inline std::string checkpoint_mem_moves(Proc& sv, const fs::path& store) {
  EXPECT_TRUE(eventually([&] { return count(sv.out(), "step ") >= 20; })) << sv.err();
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(::kill(sv.pid(), SIGUSR1), 0);
    EXPECT_TRUE(eventually([&] { return run_state(store).value("requests_served", 0) >= i; }))
        << sv.err();
    size_t steps = count(sv.out(), "step ");
    EXPECT_TRUE(eventually([&] { return count(sv.out(), "step ") >= steps + 15; })) << sv.err();
  }
  return run_state(store).value("last_generation", "");
}

inline std::vector<std::string> mem_moves_run(const fs::path& store,
                                              const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {CKPT_CLI_PATH, "run", "--dir",        store.string(),
                                   "--interval",  "0",   "--min-uptime", "0.2"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {"--", CKPT_SV_MEM_MOVES, "100000"});
  return argv;
}

// How many generations of `store` have `label` in their manifest.
inline size_t generations_with(const fs::path& store, const std::string& label) {
  size_t n = 0;
  for (auto& e : fs::directory_iterator(store))
    if (e.path().filename().string().starts_with("gen-"))
      n += slurp(e.path() / "manifest").find("\"" + label + "\"") != std::string::npos;
  return n;
}

// Kills the program: the run must recover it once, from `gen` (not from its start), with every
// page right through 30 more steps, end when told to, and leave a store that verifies.
inline void expect_recovered_from(Proc& sv, const fs::path& store, const std::string& gen) {
  ASSERT_TRUE(signal_child(store, SIGKILL));
  ASSERT_TRUE(eventually([&] { return count(sv.err(), "recovered from ") >= 1; })) << sv.err();
  size_t steps = count(sv.out(), "step ");
  EXPECT_TRUE(eventually([&] { return count(sv.out(), "step ") >= steps + 30; })) << sv.err();
  ASSERT_EQ(::kill(sv.pid(), SIGTERM), 0);  // forwarded to the program
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  std::string out = sv.out(), err = sv.err();
  EXPECT_EQ(count(err, "recovered from generation " + gen), 1u) << err;
  EXPECT_EQ(count(out, "started\n"), 1u) << out;
  EXPECT_EQ(count(out, "BAD"), 0u) << out;
  EXPECT_EQ(count(out, "done "), 1u) << err;
  auto [code, text] = run_cmd({CKPT_CLI_PATH, "verify", store.string()});
  EXPECT_EQ(code, 0) << text;
}

}  // namespace ckpt::test
