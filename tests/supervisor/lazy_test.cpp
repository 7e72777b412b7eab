// `ckpt run --lazy`: a crashed program is restored without its memory and runs at once while the
// supervisor's page server fills it; the program checks every page as it goes. A generation with
// a damaged page kills the restored program rather than feed it the page, and the run goes on
// from an older generation.
#include <gtest/gtest.h>

#include <regex>

#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

const std::regex kComplete(
    "memory of pid [0-9]+ complete in [0-9.]+ ms: ([0-9]+) pages on demand \\([0-9]+ faults\\), "
    "([0-9]+) in the background");

// The largest file of a generation: its pages.
fs::path pages_file(const fs::path& gen) {
  fs::path biggest;
  uintmax_t size = 0;
  for (auto& f : fs::directory_iterator(gen))
    if (f.path().filename() != "manifest" && f.file_size() > size) {
      size = f.file_size();
      biggest = f.path();
    }
  return biggest;
}

void flip_byte_in_middle(const fs::path& file) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << file;
  off_t at = static_cast<off_t>(fs::file_size(file) / 2);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, at), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
  ::close(fd);
}

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

TEST(SupervisorLazy, CrashIsRecoveredWhileTheMemoryArrivesAndEveryPageIsRight) {
  TempDir d;
  auto store = d.path() / "store";
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--lazy", "--dir", store, "--interval", "0",
                     "--min-uptime", "0.2", "--", CKPT_SV_MEM_STEPS, "64", "150"});
  ASSERT_TRUE(eventually([&] { return sv.out() == "filled\n"; })) << sv.err();
  auto gens = request_checkpoints(sv, store, 1);
  ASSERT_EQ(::kill(run_state(store).value("child_pid", 0), SIGKILL), 0);
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
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--lazy", "--dir", store, "--interval", "0",
                     "--min-uptime", "0.2", "--", CKPT_SV_MEM_STEPS, "32", "200"});
  ASSERT_TRUE(eventually([&] { return sv.out() == "filled\n"; })) << sv.err();
  auto gens = request_checkpoints(sv, store, 2);
  ASSERT_NE(gens[0], gens[1]);
  flip_byte_in_middle(pages_file(store / gens[1]));
  ASSERT_EQ(::kill(run_state(store).value("child_pid", 0), SIGKILL), 0);
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
