// The lab's test script (2.4) for the task 2.3 variant where `ckpt run` checkpoints the
// unmodified worker with no help from it: the plain lab-worker (no ckpt calls on its path) runs
// under the supervisor, fed through a pipe; crashes by negative inputs and by SIGKILL from
// outside; after each, the worker goes on from the newest checkpoint and the output file is right.
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "lab_harness.hpp"

namespace {

using namespace ckpt::labtest;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path store_of(const TempDir& dir) {
  return dir.path() / "store";
}

size_t generations(const TempDir& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(store_of(dir), ec))
    if (e.path().filename().string().starts_with("gen-")) ++n;
  return n;
}

std::vector<std::string> supervised(const TempDir& dir, const std::string& interval) {
  // --min-uptime 0: the lab's monitor always goes back to the newest checkpoint, however soon
  // the crash (the test crashes the worker within milliseconds on purpose).
  return {CKPT_CLI, "run",      "--dir",  store_of(dir).string(), "--interval",
          interval, "--keep",   "50",     "--min-uptime",         "0",
          "--",     LAB_WORKER, "out.txt"};
}

// `ckpt checkpoint DIR`: returns once the supervisor has answered.
int request_checkpoint(const TempDir& dir) {
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = start({CKPT_CLI, "checkpoint", store_of(dir).string()}, dir.path(), in);
  close(in);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

void expect_output(const TempDir& dir, const std::vector<std::string>& equivalent_inputs) {
  EXPECT_EQ(slurp(dir.path() / "out.txt"), uninterrupted_output(equivalent_inputs))
      << "stderr:\n"
      << slurp(dir.path() / "stderr.txt");
}

// Checkpoints on request, so that which inputs each one holds is known.
TEST(LabSupervised, CheckpointsOnRequest) {
  TempDir dir;
  LabRun run(supervised(dir, "0"), dir.path());
  run.send("-3");  // before any checkpoint: from scratch
  run.send("5");
  ASSERT_EQ(request_checkpoint(dir), 0);  // A: 5
  run.send("3");                          // lost
  run.send("-1");
  run.send("4");
  ASSERT_EQ(request_checkpoint(dir), 0);  // B: 5 4
  run.send("7");                          // lost
  run.kill_worker();
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "4", "2", "x"});
  EXPECT_EQ(generations(dir), 2u);
  std::string err = slurp(dir.path() / "stderr.txt");
  EXPECT_EQ(count(err, "recovered from generation "), 2u) << err;
  EXPECT_EQ(count(err, "recovered from a fresh start"), 1u) << err;
  EXPECT_EQ(count(err, "crash: killed by SIGKILL"), 1u) << err;
  EXPECT_EQ(count(err, "crash: exit status 253"), 1u) << err;
  EXPECT_EQ(count(err, "crash: exit status 255"), 1u) << err;
}

// Periodic checkpoints while the worker waits for input: a crash after one loses nothing.
TEST(LabSupervised, PeriodicCheckpoints) {
  TempDir dir;
  LabRun run(supervised(dir, "0.2"), dir.path());
  auto wait_for_new_checkpoints = [&](size_t n) {
    size_t target = generations(dir) + n;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (generations(dir) < target && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    // The newest may still be being written when it appears: one more makes sure an earlier
    // one (taken after the input) is complete.
    ASSERT_GE(generations(dir), target) << slurp(dir.path() / "stderr.txt");
  };
  run.send("5");
  wait_for_new_checkpoints(2);
  run.send("-1");
  run.send("3");
  wait_for_new_checkpoints(2);
  run.kill_worker();
  run.send("2");
  wait_for_new_checkpoints(2);
  run.send("-7");
  run.send("6");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "2", "6", "x"});
  std::string err = slurp(dir.path() / "stderr.txt");
  EXPECT_EQ(count(err, "recovered from generation "), 3u) << err;
}

}  // namespace
