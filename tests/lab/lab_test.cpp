// The lab's test script (2.4, 3.1) as tests: each case runs a monitor in its own temporary
// directory, feeds it lines through a pipe, crashes the worker by negative inputs and SIGKILL,
// overwrites the newest checkpoint with random bytes while the worker waits for input, and
// finally compares the output file with what an uninterrupted worker produces.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "app/state_file.hpp"
#include "lab_harness.hpp"

namespace {

using namespace ckpt::labtest;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<ckpt::app::CheckpointEntry> checkpoints(const fs::path& dir) {
  auto r = ckpt::app::list_checkpoints(dir);
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : std::vector<ckpt::app::CheckpointEntry>{};
}

void overwrite_newest_with_random_bytes(const fs::path& dir) {
  auto list = checkpoints(dir);
  ASSERT_FALSE(list.empty());
  auto size = fs::file_size(list.front().path);
  std::string junk(size, '\0');
  std::ifstream("/dev/urandom", std::ios::binary).read(junk.data(), junk.size());
  std::ofstream(list.front().path, std::ios::binary | std::ios::trunc) << junk;
}

void expect_output(const TempDir& dir, const std::vector<std::string>& equivalent_inputs) {
  EXPECT_EQ(slurp(dir.path() / "out.txt"), uninterrupted_output(equivalent_inputs))
      << "stderr:\n"
      << slurp(dir.path() / "stderr.txt");
  EXPECT_NE(slurp(dir.path() / "stdout.txt").find("Writing output to out.txt... Done.\n"),
            std::string::npos);
}

TEST(Lab, UninterruptedRunsAreReproducible) {
  std::vector<std::string> in = {"5", "3", "100", "x"};
  std::string a = uninterrupted_output(in);
  EXPECT_EQ(a, uninterrupted_output(in));
  std::istringstream lines(a);
  int n = 0;
  for (int v; lines >> v; ++n) EXPECT_TRUE(v >= 0 && v <= (n < 5 ? 5 : n < 8 ? 3 : 100)) << v;
  EXPECT_EQ(n, 108);
}

// 2.1: without checkpoints every restart begins from scratch, so only the numbers after the last
// crash survive.
TEST(Lab, Task2_1RestartsFromScratch) {
  TempDir dir;
  LabRun run({LAB_TASK2_1, "out.txt"}, dir.path());
  run.send("5");
  run.send("3");
  run.send("-1");
  run.send("4");
  run.kill_worker();
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"2", "x"});
  EXPECT_TRUE(checkpoints(dir.path()).empty());
  EXPECT_NE(slurp(dir.path() / "stderr.txt").find("exited with status 255"), std::string::npos);
}

// 3.1-3.3 with a checkpoint after every input: crashes lose nothing, a corrupted newest
// checkpoint loses exactly the input after the one before it, stale checkpoints of an earlier
// run are never restored.
TEST(Lab, Task3EveryInput) {
  TempDir dir;
  {
    // A stale checkpoint from an earlier run; the monitor must remove it when it starts.
    std::ofstream(dir.path() / "stale-input") << "7\n8\nx\n";
    int stale = open((dir.path() / "stale-input").c_str(), O_RDONLY | O_CLOEXEC);
    pid_t pid = start({LAB_WORKER, "--checkpoint-interval", "0", "stale.txt"}, dir.path(), stale);
    waitpid(pid, nullptr, 0);
    close(stale);
    ASSERT_EQ(checkpoints(dir.path()).size(), 2u);
  }
  LabRun run({LAB_TASK3, "out.txt", "0"}, dir.path());
  run.wait_idle();
  EXPECT_TRUE(checkpoints(dir.path()).empty());
  run.send("-3");  // crash before any checkpoint: starts from scratch
  run.send("5");
  run.send("3");
  run.send("-1");
  run.send("4");
  run.kill_worker();
  run.send("6");
  overwrite_newest_with_random_bytes(dir.path());  // the state after "6"
  run.send("-2");
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "4", "2", "x"});
  std::string err = slurp(dir.path() / "stderr.txt");
  EXPECT_NE(err.find("no valid checkpoint; starting from scratch"), std::string::npos) << err;
  EXPECT_NE(err.find("lab-worker: skipped checkpoint."), std::string::npos) << err;
  EXPECT_NE(err.find("was killed by signal 9"), std::string::npos) << err;
}

// The example: "5 3 -1 2 x" writes the same file as "5 3 2 x".
TEST(Lab, Task3CrashIsInvisibleInTheOutput) {
  TempDir dir;
  LabRun run({LAB_TASK3, "out.txt", "0"}, dir.path());
  run.send("5");
  run.send("3");
  run.send("-1");
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "2", "x"});
}

// All lines in one write: the crashing worker must not have read (and lost) the lines after
// its negative input, which the restarted worker still has to get.
TEST(Lab, Task3InputSentAtOnceSurvivesACrash) {
  TempDir dir;
  LabRun run({LAB_TASK3, "out.txt", "0"}, dir.path());
  EXPECT_EQ(run.finish("5\n3\n-1\n2\nx"), 0);
  expect_output(dir, {"5", "3", "2", "x"});
}

// With an interval, a crash goes back to the last checkpoint: inputs after it are lost. Inputs
// meant to be checkpointed come after sleeping past the interval; the others come at once.
TEST(Lab, Task3WithInterval) {
  constexpr auto kPast = 2200ms;  // interval 2 s
  TempDir dir;
  LabRun run({LAB_TASK3, "out.txt", "2"}, dir.path());
  run.send("5");
  EXPECT_TRUE(checkpoints(dir.path()).empty());
  std::this_thread::sleep_for(kPast);
  run.send("3");  // checkpoint A: 5 3
  EXPECT_EQ(checkpoints(dir.path()).size(), 1u);
  run.send("4");  // lost
  run.send("-1");
  run.send("2");
  std::this_thread::sleep_for(kPast);
  run.send("6");  // checkpoint B: 5 3 2 6
  run.send("1");  // lost
  run.kill_worker();
  std::this_thread::sleep_for(kPast);
  run.send("7");  // checkpoint C: 5 3 2 6 7, then corrupted
  EXPECT_EQ(checkpoints(dir.path()).size(), 3u);
  overwrite_newest_with_random_bytes(dir.path());
  run.send("-2");  // back to B
  run.send("9");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "2", "6", "9", "x"});
}

// A worker that can never succeed (its output file cannot be created) must not be restarted
// forever: the monitor gives up with an error once it keeps failing at once.
TEST(Lab, MonitorGivesUpOnACrashLoop) {
  TempDir dir;
  LabRun run({LAB_TASK2_1, "no-such-dir/out.txt"}, dir.path());
  EXPECT_EQ(run.finish("x"), 1);
  std::string err = slurp(dir.path() / "stderr.txt");
  EXPECT_NE(err.find("quick crashes in a row, giving up"), std::string::npos) << err;
  EXPECT_NE(slurp(dir.path() / "stdout.txt").find("failed: No such file or directory"),
            std::string::npos);
}

TEST(Lab, Task3RejectsABadInterval) {
  TempDir dir;
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (const char* bad : {"-1", "abc", "1.5", ""}) {
    pid_t pid = start({LAB_TASK3, "out.txt", bad}, dir.path(), in);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << bad;
  }
  close(in);
}

}  // namespace
