// The lab's test script (2.4) for tasks 2.2 and 2.3, where the worker checkpoints its whole
// process with ckpt_dump() and the monitor restores it with ckpt_restore_child(): crashes by
// negative inputs and by SIGKILL from outside; after each, the worker goes on from its newest
// checkpoint (the numbers it had then, plus what came after), and the output file is right.
// Also ckpt_dump() in a multi-threaded C program: 0 in the process that goes on, 1 after restore.
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ckpt/ckpt.h"
#include "lab_harness.hpp"

namespace {

using namespace ckpt::labtest;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Generations the worker's ckpt_dump() calls have published. ckpt_dump() returns only after the
// commit, so a worker back at reading stdin has published all of its checkpoints.
size_t generations(const TempDir& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir.path() / "ckpt-images", ec))
    if (e.path().filename().string().starts_with("gen-")) ++n;
  return n;
}

// Waits until the worker has published more than `than` checkpoints and is idle again.
void wait_for_checkpoint(LabRun& run, const TempDir& dir, size_t than) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (generations(dir) <= than && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_GT(generations(dir), than) << "no new checkpoint; stderr:\n"
                                    << slurp(dir.path() / "stderr.txt");
  run.wait_idle();
}

void expect_output(const TempDir& dir, const std::vector<std::string>& equivalent_inputs) {
  EXPECT_EQ(slurp(dir.path() / "out.txt"), uninterrupted_output(equivalent_inputs))
      << "stderr:\n"
      << slurp(dir.path() / "stderr.txt");
  EXPECT_NE(slurp(dir.path() / "stdout.txt").find("Writing output to out.txt... Done.\n"),
            std::string::npos);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// 2.2 with a checkpoint after every input: no crash loses anything.
TEST(LabInproc, Task2_2EveryInput) {
  TempDir dir;
  LabRun run({LAB_TASK2_2, "out.txt", "0"}, dir.path());
  run.send("-3");  // before any checkpoint: from scratch
  run.send("5");
  run.send("3");
  EXPECT_EQ(generations(dir), 2u);
  run.send("-1");
  run.send("4");
  run.kill_worker();
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "4", "2", "x"});
  std::string err = slurp(dir.path() / "stderr.txt");
  EXPECT_NE(err.find("no checkpoint yet; starting the worker from scratch"), std::string::npos)
      << err;
  EXPECT_EQ(count(err, "restored the worker from its newest checkpoint"), 2u) << err;
  EXPECT_EQ(count(err, "lab-worker: restored from a checkpoint"), 2u) << err;
  EXPECT_NE(err.find("was killed by signal 9"), std::string::npos) << err;
}

// 2.2 with an interval: a crash goes back to the newest checkpoint, inputs after it are lost.
TEST(LabInproc, Task2_2WithInterval) {
  constexpr auto kPast = 2200ms;  // interval 2 s
  TempDir dir;
  LabRun run({LAB_TASK2_2, "out.txt", "2"}, dir.path());
  run.send("5");
  EXPECT_EQ(generations(dir), 0u);
  std::this_thread::sleep_for(kPast);
  run.send("3");  // checkpoint A: 5 3
  EXPECT_EQ(generations(dir), 1u);
  run.send("4");  // lost
  run.send("-1");
  run.send("2");  // the restored copy counts its interval from the restore
  std::this_thread::sleep_for(kPast);
  run.send("6");  // checkpoint B: 5 3 2 6
  EXPECT_EQ(generations(dir), 2u);
  run.send("1");  // lost
  run.kill_worker();
  run.send("9");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "2", "6", "9", "x"});
}

// 2.3, checkpoints triggered by hand (`kill -USR1`, as the lab suggests) so that which inputs
// each one holds is known; the monitor's own period is too long to interfere.
TEST(LabInproc, Task2_3SigusrByHand) {
  TempDir dir;
  LabRun run({LAB_TASK2_3, "out.txt", "1000"}, dir.path());
  run.send("5");
  ASSERT_EQ(kill(run.wait_idle(), SIGUSR1), 0);  // A: 5
  wait_for_checkpoint(run, dir, 0);
  run.send("3");  // lost
  run.send("-1");
  run.send("4");
  ASSERT_EQ(kill(run.wait_idle(), SIGUSR1), 0);  // B: 5 4
  wait_for_checkpoint(run, dir, 1);
  run.send("7");  // lost
  run.kill_worker();
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "4", "2", "x"});
  std::string err = slurp(dir.path() / "stderr.txt");
  EXPECT_EQ(count(err, "restored the worker from its newest checkpoint"), 2u) << err;
}

// 2.3 with the monitor's timer: checkpoints come without any input, and a crash after one
// loses nothing.
TEST(LabInproc, Task2_3MonitorTimer) {
  TempDir dir;
  LabRun run({LAB_TASK2_3, "out.txt", "0.5"}, dir.path());
  run.send("5");
  wait_for_checkpoint(run, dir, generations(dir));
  run.send("-1");
  run.send("3");
  wait_for_checkpoint(run, dir, generations(dir));
  run.kill_worker();
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"5", "3", "2", "x"});
}

// SIGUSR1s arriving all the time, in the middle of reads and of generating, lose no input.
TEST(LabInproc, Task2_3SignalsLoseNoInput) {
  TempDir dir;
  LabRun run({LAB_TASK2_3, "out.txt", "0.05"}, dir.path());
  std::vector<std::string> in;
  for (int i = 1; i <= 25; ++i) {
    in.push_back(std::to_string(i * 37 % 500 + 1));
    run.send(in.back());
    std::this_thread::sleep_for(20ms);
  }
  in.push_back("x");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, in);
  EXPECT_GE(generations(dir), 3u);
}

TEST(LabInproc, MonitorsRejectABadInterval) {
  TempDir dir;
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (const char* bad : {"-1", "abc", "1.5", ""}) {
    pid_t pid = start({LAB_TASK2_2, "out.txt", bad}, dir.path(), in);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << bad;
  }
  for (const char* bad : {"-1", "0", "abc", ""}) {
    pid_t pid = start({LAB_TASK2_3, "out.txt", bad}, dir.path(), in);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << bad;
  }
  close(in);
}

// The monitor never restores checkpoints of an earlier run: it empties the images directory.
TEST(LabInproc, StaleCheckpointsAreNotRestored) {
  TempDir dir;
  {
    LabRun first({LAB_TASK2_2, "first.txt", "0"}, dir.path());
    first.send("7");
    EXPECT_EQ(first.finish("x"), 0);
  }
  LabRun run({LAB_TASK2_2, "out.txt", "0"}, dir.path());
  run.wait_idle();
  EXPECT_EQ(generations(dir), 0u);
  run.send("-1");  // nothing to restore: from scratch, not the earlier run's "7"
  run.send("2");
  EXPECT_EQ(run.finish("x"), 0);
  expect_output(dir, {"2", "x"});
}

// Runs inproc-mt (which checkpoints itself into DIR/images) to its end; returns its wait status.
int run_inproc_mt(const TempDir& dir, bool kill_after_dump = false, pid_t* pid_out = nullptr) {
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<std::string> argv = {INPROC_MT_PROGRAM, (dir.path() / "images").string(),
                                   "result.txt"};
  if (kill_after_dump) argv.push_back("--kill");
  pid_t pid = start(argv, dir.path(), in);
  close(in);
  if (pid_out) *pid_out = pid;
  int status = -1;
  // Reaped here, so that its PID is free again for a restore.
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

// ckpt_dump() from a multi-threaded C program, then ckpt_restore_child() from this process.
TEST(InprocessApi, MultiThreadedDumpReturnsZeroThenOneAfterRestore) {
  TempDir dir;
  std::string images = (dir.path() / "images").string();
  pid_t pid = 0;
  int status = run_inproc_mt(dir, false, &pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n"
                                                             << slurp(dir.path() / "stderr.txt");
  EXPECT_EQ(slurp(dir.path() / "result.txt"), "dump returned 0, 3 threads\n");

  ckpt_init_opts();
  ASSERT_EQ(ckpt_set_images_dir(images.c_str()), 0);
  int restored = ckpt_restore_child();
  ASSERT_GT(restored, 0) << ckpt_last_error();
  EXPECT_EQ(restored, pid);
  ASSERT_EQ(waitpid(restored, &status, 0), restored);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n"
                                                             << slurp(dir.path() / "stderr.txt");
  EXPECT_EQ(slurp(dir.path() / "result.txt"),
            "dump returned 0, 3 threads\ndump returned 1, 3 threads\n");
}

// The caller's own signal handlers point into its own code: the restored process must not get
// them (it had the default action for SIGHUP and SIGINT).
TEST(InprocessApi, RestoredChildDoesNotInheritTheCallersHandlers) {
  TempDir dir;
  std::string images = (dir.path() / "images").string();
  ASSERT_EQ(run_inproc_mt(dir), 0);
  struct sigaction mine {};
  mine.sa_handler = [](int) {};
  struct sigaction old_hup {
  }, old_int{};
  ASSERT_EQ(sigaction(SIGHUP, &mine, &old_hup), 0);
  ASSERT_EQ(sigaction(SIGINT, &mine, &old_int), 0);
  ckpt_init_opts();
  ASSERT_EQ(ckpt_set_images_dir(images.c_str()), 0);
  int restored = ckpt_restore_child();
  sigaction(SIGHUP, &old_hup, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  ASSERT_GT(restored, 0) << ckpt_last_error();
  std::string status = slurp(fs::path("/proc") / std::to_string(restored) / "status");
  auto at = status.find("SigCgt:\t");
  ASSERT_NE(at, std::string::npos);
  uint64_t caught = std::stoull(status.substr(at + 8, 16), nullptr, 16);
  EXPECT_EQ(caught & (uint64_t{1} << (SIGHUP - 1)), 0u) << status;
  EXPECT_EQ(caught & (uint64_t{1} << (SIGINT - 1)), 0u) << status;
  int st = 0;
  ASSERT_EQ(waitpid(restored, &st, 0), restored);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

// leave_running off (the default, as in libcriu): a successful dump kills the process; only the
// restored copy goes on, and its ckpt_dump() returns 1.
TEST(InprocessApi, WithoutLeaveRunningTheDumpedProcessIsKilled) {
  TempDir dir;
  std::string images = (dir.path() / "images").string();
  int status = run_inproc_mt(dir, true);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << status << "\n"
      << slurp(dir.path() / "stderr.txt");
  EXPECT_FALSE(fs::exists(dir.path() / "result.txt"));
  ckpt_init_opts();
  ASSERT_EQ(ckpt_set_images_dir(images.c_str()), 0);
  int restored = ckpt_restore_child();
  ASSERT_GT(restored, 0) << ckpt_last_error();
  ASSERT_EQ(waitpid(restored, &status, 0), restored);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(slurp(dir.path() / "result.txt"), "dump returned 1, 3 threads\n");
}

// Restoring through ckpt_set_images_dir_fd works as through a path.
TEST(InprocessApi, ImagesDirectoryByDescriptor) {
  TempDir dir;
  std::string images = (dir.path() / "images").string();
  ASSERT_EQ(run_inproc_mt(dir), 0);
  int fd = open(images.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ckpt_init_opts();
  ASSERT_EQ(ckpt_set_images_dir_fd(fd), 0);
  int restored = ckpt_restore_child();
  close(fd);
  ASSERT_GT(restored, 0) << ckpt_last_error();
  int status = 0;
  ASSERT_EQ(waitpid(restored, &status, 0), restored);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(slurp(dir.path() / "result.txt"),
            "dump returned 0, 3 threads\ndump returned 1, 3 threads\n");
}

TEST(InprocessApi, ErrorsAreNegativeErrnoWithAMessage) {
  ckpt_init_opts();
  EXPECT_EQ(ckpt_dump(), -EINVAL);
  EXPECT_NE(std::string(ckpt_last_error()).find("no images directory"), std::string::npos);
  EXPECT_EQ(ckpt_restore_child(), -EINVAL);
  EXPECT_EQ(ckpt_set_images_dir(""), -EINVAL);
  EXPECT_EQ(ckpt_set_images_dir_fd(-1), -EBADF);
  TempDir dir;
  ASSERT_EQ(ckpt_set_images_dir(dir.path().c_str()), 0);
  EXPECT_EQ(ckpt_restore_child(), -ENOENT);
  EXPECT_NE(std::string(ckpt_last_error()).find("holds no checkpoint"), std::string::npos);
  // The dumper fails before stopping anything (the store cannot be created under a file): the
  // caller gets its errno back and simply goes on.
  std::ofstream(dir.path() / "file") << "x";
  ASSERT_EQ(ckpt_set_images_dir((dir.path() / "file" / "images").c_str()), 0);
  EXPECT_EQ(ckpt_dump(), -ENOTDIR);
  EXPECT_NE(std::string(ckpt_last_error()).find("images"), std::string::npos) << ckpt_last_error();
}

}  // namespace
