// Lazy restore (`ckpt restore --lazy`, resources/lazy_pages.hpp): the program runs while its
// memory arrives, and no page it reads is missing or wrong: not while it reads in random order,
// drops pages, moves an area or forks, not from an incremental chain, not from a damaged image.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "support/damage.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

size_t rounds(const std::string& text, size_t from) {
  return count_from(text, "ROUND ", from);
}

bool wait_rounds(const TestProcess& p, size_t want, size_t from) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (rounds(p.out(), from) >= want) return true;
    sleep_for(20ms);
  }
  return false;
}

// Stops the program's forks, so that a dump finds it without a child.
::testing::AssertionResult quiet(const TestProcess& p) {
  size_t from = p.out().size();
  ::kill(p.pid(), SIGUSR1);
  for (int i = 0; i < 500; ++i) {
    if (p.out().find("QUIET", from) != std::string::npos) return ::testing::AssertionSuccess();
    sleep_for(10ms);
  }
  return ::testing::AssertionFailure() << "no QUIET\n" << p.output();
}

// The pages the restore's line says were given on demand, or -1 without that line.
long pages_on_demand(const std::string& err) {
  std::smatch m;
  static const std::regex line("complete in [0-9.]+ ms: ([0-9]+) pages on demand");
  if (!std::regex_search(err, m, line)) return -1;
  return std::stol(m[1].str());
}

// The newest generation's pages file.
fs::path pages_file(const fs::path& store) {
  fs::path newest;
  for (auto& e : fs::directory_iterator(store))
    if (e.path().filename().string().rfind("gen-", 0) == 0 && e.path() > newest) newest = e.path();
  return ckpt::test_support::pages_file(newest);
}

TEST(LazyRestore, ProgramReadingDroppingMovingAndForkingGetsEveryPageRight) {
  become_subreaper();
  TestProcess p({program_path("lazy_reader"), "256"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_rounds(p, 1, 0)) << p.output();
  ASSERT_TRUE(quiet(p));
  ASSERT_TRUE(p.dump());
  // It forks again once it finds it was stopped for longer than its pause (300 ms): a dump and
  // lazy restore can take less here.
  sleep_for(400ms);
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--lazy"}));
  // It ran before its memory was in: some pages came because it asked for them.
  EXPECT_GT(pages_on_demand(p.restore_err()), 0) << p.restore_err();
  ASSERT_TRUE(wait_rounds(p, 2, cut)) << p.output();
  // It forked again while its pages arrived (its children checked their copies).
  EXPECT_NE(p.out().find("LOUD", cut), std::string::npos) << p.output();
  // It then reads every page of the big area once more, and its checks say PASS.
  EXPECT_TRUE(p.finish(30s));
  EXPECT_EQ(p.out().find("FAIL", cut), std::string::npos) << p.output();
}

TEST(LazyRestore, IncrementalChainGivesEachPageFromTheGenerationThatStoresIt) {
  become_subreaper();
  // Quiet until a pause of a minute: under ASan on a loaded machine a leave-running dump's
  // freeze can pass 300 ms, and a fork then would put a child in the incremental dump.
  TestProcess p({program_path("lazy_reader"), "64", "60000"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(quiet(p));
  auto full = run_ckpt(
      {"dump", "-t", std::to_string(p.pid()), "-D", p.store().string(), "--leave-running"}, 60s);
  ASSERT_EQ(full.exit_code(), 0) << full.describe();
  ASSERT_TRUE(wait_rounds(p, 2, 0)) << p.output();
  // The big area is unchanged: the incremental generation takes it from the full one.
  ASSERT_EQ(p.out().find("LOUD"), std::string::npos) << p.output();
  ASSERT_TRUE(p.dump({"--incremental"}));
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--lazy"}));
  EXPECT_GE(pages_on_demand(p.restore_err()), 0) << p.restore_err();
  ASSERT_TRUE(wait_rounds(p, 2, cut)) << p.output();
  EXPECT_TRUE(p.finish(30s));
}

TEST(LazyRestore, DamagedPageKillsTheProgramInsteadOfGivingItAWrongPage) {
  become_subreaper();
  TestProcess p({program_path("lazy_reader"), "64"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(quiet(p));
  ASSERT_TRUE(p.dump());
  // One byte in the middle of the pages: inside the big area, which is left to the server.
  fs::path data = pages_file(p.store());
  ASSERT_TRUE(ckpt::test_support::flip_byte_in_middle(data)) << data;
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach", "--lazy"}, 60s);
  EXPECT_NE(r.exit_code(), 0) << r.describe();
  EXPECT_NE(r.err.find("does not match its page index"), std::string::npos) << r.err;
  // Started, then killed rather than let it read the wrong page.
  auto status = wait_child(p.pid(), 10s);
  ASSERT_TRUE(status.has_value()) << "pid " << p.pid() << " still runs";
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << describe_status(*status);
  EXPECT_EQ(p.out().find("PASS"), std::string::npos) << p.output();
}

TEST(LazyRestore, KilledCkptTakesTheProgramAlongInsteadOfLeavingItZeros) {
  become_subreaper();
  TestProcess p({program_path("lazy_reader"), "512"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(quiet(p));
  ASSERT_TRUE(p.dump());
  size_t cut = p.out().size();
  TempDir d;
  fs::path pidfile = d.path() / "pid";
  int null = open_or_die("/dev/null", O_RDWR);
  SpawnSpec spec;
  spec.argv = {ckpt_path(), "restore",  "-D",        p.store().string(),
               "--lazy",    "--detach", "--pidfile", pidfile.string()};
  for (int& fd : spec.fds) fd = null;
  pid_t ckpt = spawn(spec);
  ::close(null);
  // Killed as soon as the program runs, while most of its 512 MiB are still to come.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!fs::exists(pidfile) && alive(ckpt) && std::chrono::steady_clock::now() < deadline)
    sleep_for(1ms);
  ASSERT_TRUE(fs::exists(pidfile)) << "the restore did not start the program";
  ASSERT_EQ(::kill(ckpt, SIGKILL), 0);
  auto ckpt_status = wait_child(ckpt, 10s);
  ASSERT_TRUE(ckpt_status.has_value());
  ASSERT_TRUE(WIFSIGNALED(*ckpt_status))
      << "ckpt ended by itself first (memory already in): " << describe_status(*ckpt_status);
  // The guard killed it: without one it would have read zeros (and failed its checks or crashed).
  auto status = wait_child(p.pid(), 10s);
  ASSERT_TRUE(status.has_value()) << "pid " << p.pid() << " still runs";
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << describe_status(*status);
  EXPECT_EQ(p.out().find("FAIL", cut), std::string::npos) << p.output();
}

}  // namespace
}  // namespace e2e
