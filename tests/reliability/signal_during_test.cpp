// A signal reaching the program at each of the dumper's kill points (CKPT_FAULT_SIGNAL): the
// dump stops threads inside blocking calls, runs system calls in the program with every signal
// blocked and sets its registers back, and a signal sent meanwhile must still be delivered and
// still interrupt the call the program waits in, as it would have without ckpt. Daemons wait for
// SIGTERM or SIGHUP exactly so (`while (!flag) pause();`): a lost wake-up hangs them for good.
#include <gtest/gtest.h>
#include <signal.h>

#include "rel_util.hpp"

namespace rel {
namespace {

std::vector<std::string> dump_args(pid_t pid, const fs::path& store) {
  return {"dump", "-t", std::to_string(pid), "-D", store.string(), "--leave-running"};
}

class SignalDuringDump : public ::testing::TestWithParam<const char*> {};

TEST_P(SignalDuringDump, AtEveryKindOfPointTheWaitEndsInEintr) {
  const std::string mode = GetParam();
  TempDir dir;
  auto store = dir / "store";
  std::vector<std::string> names;
  {
    TestProcess p({program_path("signal_wait"), mode});
    ASSERT_TRUE(p.wait_ready());
    auto count_file = dir / "points";
    auto r = run_ckpt_env(dump_args(p.pid(), store), {"CKPT_FAULT_COUNT=" + count_file.string()});
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    names = read_points(count_file);
  }
  ASSERT_FALSE(names.empty());
  auto at = choose_points(names, scaled(12, 1000000));
  for (long n : at) {
    std::string where = "point " + std::to_string(n) + " (" + names[n - 1] + ")";
    TestProcess p({program_path("signal_wait"), mode});
    ASSERT_TRUE(p.wait_ready()) << where;
    auto count_file = dir / ("points-" + std::to_string(n));
    auto r = run_ckpt_env(
        dump_args(p.pid(), store),
        {"CKPT_FAULT_KILL_AT=" + std::to_string(n),
         "CKPT_FAULT_KILL_PID=" + std::to_string(p.pid()),
         "CKPT_FAULT_SIGNAL=" + std::to_string(SIGUSR1), "CKPT_FAULT_COUNT=" + count_file.string()},
        30s);
    // Runs differ a little in their number of points (waits that poll): a run that ended before
    // point n sent nothing, and the signal comes once the dump is over instead.
    if (read_points(count_file).size() < static_cast<size_t>(n)) {
      where += ", not reached: sent after the dump";
      ::kill(p.pid(), SIGUSR1);
    }
    // A program woken before it was stopped may end during the dump, which then fails; the
    // dump's outcome is not the point here, the program's is.
    EXPECT_TRUE(wait_for_text(p.dir() / "stdout", "WOKE " + mode, p.pid(), 5s))
        << "SIGUSR1 at " << where << " did not end " << mode << "()\n"
        << p.output() << r.describe();
    EXPECT_EQ(p.out().find("FAIL"), std::string::npos) << where << "\n" << p.output();
    if (::testing::Test::HasFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(Waits, SignalDuringDump,
                         ::testing::Values("pause", "sigsuspend", "nanosleep", "read", "epoll"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace rel
