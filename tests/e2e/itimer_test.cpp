// A periodic ITIMER_REAL keeps running while the dump holds the process frozen. The kernel re-arms
// it only when its SIGALRM is taken, so a timer that fires between the dump's read of the pending
// signals and its read of the timers is expired with its signal queued: an image holding the
// expired timer without that signal would restore a timer that never fires again.
#include <gtest/gtest.h>

#include "test_process.hpp"

namespace e2e {
namespace {

TEST(ItimerDuringFreeze, ATimerFiringBetweenTheSignalsAndTheTimersReadKeepsTickingAfterRestore) {
  become_subreaper();
  TestProcess p({"/usr/bin/python3", "-c",
                 "import signal\ni = 0\ndef tick(*_):\n    global i\n"
                 "    print('tick', i, flush=True)\n    i += 1\n"
                 "signal.signal(signal.SIGALRM, tick)\n"
                 "signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)\nwhile True:\n"
                 "    signal.pause()\n"},
                {.append_stdout = true});
  ASSERT_TRUE(wait_for_text(p.dir() / "stdout", "tick 20\n", p.pid(), 10s)) << p.output();
  std::vector<std::string> dump = {
      ckpt_path(),        "dump",           "-t", std::to_string(p.pid()), "-D",
      p.store().string(), "--leave-running"};
  TempDir d;
  fs::path count = d.path() / "points";
  auto counted = run_command(dump, {"CKPT_FAULT_COUNT=" + count.string()}, 60s);
  ASSERT_EQ(counted.exit_code(), 0) << counted.describe();
  long at = point_number(count, "dump signals read");
  ASSERT_GT(at, 0) << "no fault point after the signals were read";
  // Held there 100 ms, ten periods: the timer fires while the process is frozen.
  auto held = run_command(
      dump,
      {"CKPT_FAULT_KILL_AT=" + std::to_string(at), "CKPT_FAULT_SIGNAL=0", "CKPT_FAULT_WAIT_MS=100"},
      60s);
  ASSERT_EQ(held.exit_code(), 0) << held.describe();
  p.kill_now();
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (count_from(p.out(), "tick ", cut) < 20 && std::chrono::steady_clock::now() < deadline)
    sleep_for(10ms);
  EXPECT_GE(count_from(p.out(), "tick ", cut), 20u) << p.output();
}

}  // namespace
}  // namespace e2e
