// The proof of `ckpt run`: unmodified programs SIGKILLed at random moments finish with the right
// result, and every crash and recovery is told on stderr.
#include <gtest/gtest.h>

#include <random>

#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

// Kills the supervised program `kills` times at random moments while it runs; returns how many
// kills landed.
int kill_randomly(Proc& sv, const fs::path& store, int kills, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(300, 900);
  int done = 0;
  while (done < kills && sv.running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    auto st = run_state(store);
    if (st.value("phase", "") != "running") continue;
    pid_t child = st.value("child_pid", 0);
    if (child > 0 && ::kill(child, SIGKILL) == 0) ++done;
  }
  return done;
}

// Every kill was recovered, and from a checkpoint: a program restarted from scratch each time
// would print the same result, so only the supervisor's lines tell the two apart. A crash before
// the first checkpoint restarts from scratch; after it, only a generation whose PIDs another
// process took meanwhile (the PID counter wraps, other work runs here) may be passed over.
void expect_recoveries(const Proc& sv, int kills) {
  std::string err = sv.err();
  EXPECT_EQ(count(err, "crash: killed by SIGKILL"), static_cast<size_t>(kills)) << err;
  EXPECT_EQ(count(err, "recovered from "), static_cast<size_t>(kills)) << err;
  auto first_checkpoint = err.find("checkpoint gen-");
  ASSERT_NE(first_checkpoint, std::string::npos) << err;
  std::string after = err.substr(first_checkpoint);
  size_t pid_taken = count(err, ": File exists") + count(err, "is in use by another process");
  size_t late_fresh = count(after, "recovered from a fresh start");
  EXPECT_LE(late_fresh, pid_taken) << err;
  EXPECT_EQ(count(after, "recovered from generation"),
            count(after, "crash: killed by SIGKILL") - late_fresh)
      << err;
  EXPECT_GT(count(err, "recovered from generation"), 0u) << err;
}

// python3 summing 1..n, 10 ms a step, after `prologue`, run under `ckpt run` and SIGKILLed `kills`
// times: the right sum, every kill recovered (expect_recoveries). *err gets the supervisor's
// stderr.
void python_sum_survives(const std::string& prologue, long n, int kills, unsigned seed,
                         std::string* err) {
  TempDir d;
  auto script = d.path() / "sum.py";
  std::ofstream(script) << prologue
                        << "import sys, time\n"
                           "n = int(sys.argv[1]); total = 0\n"
                           "for i in range(1, n + 1):\n"
                           "    total += i\n"
                           "    time.sleep(0.01)\n"
                           "print(total)\n";
  auto store = d.path() / "store";
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0.2", "--min-uptime",
                     "0.2", "--", "/usr/bin/python3", script, std::to_string(n)});
  int done = kill_randomly(sv, store, kills, seed);
  ASSERT_EQ(done, kills) << sv.err();
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), std::to_string(n * (n + 1) / 2) + "\n");
  expect_recoveries(sv, kills);
  *err = sv.err();
}

TEST(SupervisorRecovery, PythonSumSurvivesTwentyRandomKills) {
  std::string err;
  python_sum_survives("", 2500, 20, 1, &err);
}

// A thread that waits on a futex with a timeout through glibc's generic syscall() (as Rust's
// std does) is left resuming that wait through restart_syscall by every checkpoint, whose code
// does not name the call: each next checkpoint must still be taken (named by where the thread
// sleeps), and recoveries come from them.
TEST(SupervisorRecovery, ProgramWaitingThroughSyscallIsCheckpointedEveryTimeAndRecovered) {
  std::string err;
  python_sum_survives(
      "import ctypes, threading\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "class TS(ctypes.Structure):\n"
      "    _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]\n"
      "word = ctypes.c_int(0)\n"
      "def wait():\n"
      "    while True:\n"
      "        ts = TS(30, 0)\n"
      "        libc.syscall(202, ctypes.byref(word), 0, 0, ctypes.byref(ts))\n"
      "threading.Thread(target=wait, daemon=True).start()\n",
      800, 5, 3, &err);
  EXPECT_EQ(count(err, "restart_syscall"), 0u) << err;
  EXPECT_GE(count(err, "checkpoint gen-"), 10u) << err;
}

// Four threads; kills land during checkpoints too. This test found a dumper hang (a traced
// leader's exit waits for its threads to be reaped) and a dump taken while a killed process ran
// its exit code (see check_still_stopped in src/dump/dump.cpp).
TEST(SupervisorRecovery, MultiThreadedCSumSurvivesTwentyRandomKills) {
  TempDir d;
  auto store = d.path() / "store";
  const long n = 40000;
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0.2", "--min-uptime",
                     "0.2", "--", CKPT_SV_MT_SUM, std::to_string(n), "4"});
  int kills = kill_randomly(sv, store, 20, 2);
  ASSERT_EQ(kills, 20) << sv.err();
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), std::to_string(n * (n + 1) / 2) + "\n");
  expect_recoveries(sv, kills);
}

// A program with children: bash forks a subshell for every `$(...)` (its output comes back
// through a pipe between the two) and waits in wait4 for every external `sleep`. A kill leaves
// the children behind; the supervisor ends them and brings back the whole tree.
TEST(SupervisorRecovery, BashWithChildProcessesSurvivesTenRandomKills) {
  TempDir d;
  auto store = d.path() / "store";
  const long n = 1000;
  std::string script = "total=0; for ((i=1;i<=" + std::to_string(n) +
                       ";i++)); do total=$((total + $(echo $i))); /bin/sleep 0.004; done; "
                       "echo $total";
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0.2", "--min-uptime",
                     "0.2", "--", "/bin/bash", "-c", script});
  int kills = kill_randomly(sv, store, 10, 3);
  ASSERT_EQ(kills, 10) << sv.err();
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), std::to_string(n * (n + 1) / 2) + "\n");
  expect_recoveries(sv, kills);
}

}  // namespace
}  // namespace ckpt::test
