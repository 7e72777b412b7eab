// A signal reaching the program at each kill point of a dump or a restore (CKPT_FAULT_SIGNAL):
// ckpt stops threads inside blocking calls, runs system calls in the program with every signal
// blocked and sets its registers back, and a signal sent meanwhile must still be delivered and
// still interrupt the call the program waits in, as it would have without ckpt. Daemons wait for
// SIGTERM or SIGHUP exactly so (`while (!flag) pause();`): a lost wake-up hangs them for good.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>

#include "rel_util.hpp"

namespace rel {
namespace {

std::vector<std::string> dump_args(pid_t pid, const fs::path& store) {
  return {"dump", "-t", std::to_string(pid), "-D", store.string(), "--leave-running"};
}

// The environment of a run that sends SIGUSR1 to `pid` at its point `n`, and records its points
// and whether the signal went out in `dir`. The point waits 5 ms after sending: the program then
// acts on the signal before ckpt's next step (sent before PTRACE_INTERRUPT, it is taken off the
// queue and the thread stops holding it, in a signal-delivery stop).
std::vector<std::string> signal_at(long n, pid_t pid, const fs::path& dir) {
  return {"CKPT_FAULT_KILL_AT=" + std::to_string(n),
          "CKPT_FAULT_KILL_PID=" + std::to_string(pid),
          "CKPT_FAULT_SIGNAL=" + std::to_string(SIGUSR1),
          "CKPT_FAULT_WAIT_MS=5",
          "CKPT_FAULT_COUNT=" + (dir / ("points-" + std::to_string(n))).string(),
          "CKPT_FAULT_SENT=" + (dir / ("sent-" + std::to_string(n))).string()};
}

enum class Sent { while_held, after_release, not_at_all };

// When the signal of the run at point n went out. Runs differ a little in their number of points
// (waits that poll), and a restore's first points come before the process exists: then nothing
// was sent. From the first thread ckpt lets go (its first detach), the kernel's own restart
// applies: a thread leaving any ptrace stop (strace's, gdb's) restarts its call on its way out,
// and a signal that comes within microseconds of that runs its handler before the call is made
// again, which then waits on (measured without ckpt: a plain seize, interrupt and detach of a
// thread in pause(), SIGUSR1 2-50 us after the detach, lost the EINTR 1-5 times in 50).
Sent when_sent(const fs::path& dir, long n) {
  auto names = read_points(dir / ("points-" + std::to_string(n)));
  bool sent = read_text(dir / ("sent-" + std::to_string(n))).find("sent") != std::string::npos;
  if (names.size() < static_cast<size_t>(n) || !sent) return Sent::not_at_all;
  auto detached = std::find(names.begin(), names.end(), "after PTRACE_DETACH");
  return detached - names.begin() < n ? Sent::after_release : Sent::while_held;
}

// The program woke up, or for a signal sent after the release at least ran its handler; a signal
// that was not sent is sent now and must wake it.
::testing::AssertionResult woke(const TestProcess& p, const std::string& mode, Sent sent) {
  if (sent == Sent::not_at_all) ::kill(p.pid(), SIGUSR1);
  std::string want = sent == Sent::after_release ? "HANDLED" : "WOKE " + mode;
  if (!wait_for_text(p.dir() / "stdout", want, p.pid(), 5s))
    return ::testing::AssertionFailure() << "no " << want << "\n" << p.output();
  if (p.out().find("FAIL") != std::string::npos) return ::testing::AssertionFailure() << p.output();
  return ::testing::AssertionSuccess();
}

std::string describe(Sent sent) {
  switch (sent) {
    case Sent::while_held:
      return "while ckpt held it";
    case Sent::after_release:
      return "after ckpt let it go";
    case Sent::not_at_all:
      return "not reached or no process yet: sent afterwards";
  }
  return "";
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
  size_t held = 0;
  for (long n : choose_points(names, scaled(12, 1000000))) {
    TestProcess p({program_path("signal_wait"), mode});
    ASSERT_TRUE(p.wait_ready());
    auto r = run_ckpt_env(dump_args(p.pid(), store), signal_at(n, p.pid(), dir.path()), 30s);
    Sent sent = when_sent(dir.path(), n);
    held += sent == Sent::while_held;
    // A program woken before it was stopped may end during the dump, which then fails: the
    // dump's outcome is not the point here, the program's is.
    EXPECT_TRUE(woke(p, mode, sent))
        << "SIGUSR1 at point " << n << " (" << names[n - 1] << ", " << describe(sent) << ")\n"
        << r.describe();
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(held, 5u) << "too few signals came while the dump held the program";
}

// The same for a restore: the restored process blocks every signal while it is built and gets
// its own mask back only at the end, so a signal sent to its PID meanwhile must wait for it and
// then interrupt the call it was dumped in (a puppet has the default actions: SIGUSR1 would kill
// it).
class SignalDuringRestore : public ::testing::TestWithParam<const char*> {};

TEST_P(SignalDuringRestore, AtEveryKindOfPointTheWaitEndsInEintr) {
  become_subreaper();
  const std::string mode = GetParam();
  TempDir dir;
  std::vector<std::string> names;
  auto restore = [](const TestProcess& p, const std::vector<std::string>& env) {
    return run_ckpt_env({"restore", "-D", p.store().string(), "--detach"}, env, 30s);
  };
  {
    TestProcess p({program_path("signal_wait"), mode});
    ASSERT_TRUE(p.wait_ready());
    ASSERT_TRUE(p.dump());
    auto count_file = dir / "points";
    auto r = restore(p, {"CKPT_FAULT_COUNT=" + count_file.string()});
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    names = read_points(count_file);
    ::kill(p.pid(), SIGKILL);
  }
  ASSERT_FALSE(names.empty());
  size_t held = 0;
  for (long n : choose_points(names, scaled(12, 1000000))) {
    TestProcess p({program_path("signal_wait"), mode});
    ASSERT_TRUE(p.wait_ready());
    ASSERT_TRUE(p.dump());
    auto r = restore(p, signal_at(n, p.pid(), dir.path()));
    Sent sent = when_sent(dir.path(), n);
    held += sent == Sent::while_held;
    std::string where =
        "SIGUSR1 at point " + std::to_string(n) + " (" + names[n - 1] + ", " + describe(sent) + ")";
    EXPECT_EQ(r.exit_code(), 0) << where << r.describe();
    EXPECT_TRUE(woke(p, mode, sent)) << where << r.describe();
    ::kill(p.pid(), SIGKILL);
    (void)live_children_of_self();
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(held, 5u) << "too few signals came while the restore held the program";
}

INSTANTIATE_TEST_SUITE_P(Waits, SignalDuringDump,
                         ::testing::Values("pause", "sigsuspend", "nanosleep", "read", "epoll"),
                         [](const auto& info) { return std::string(info.param); });

INSTANTIATE_TEST_SUITE_P(Waits, SignalDuringRestore,
                         ::testing::Values("pause", "nanosleep", "epoll"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace rel
