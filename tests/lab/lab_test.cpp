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

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kTimeout = 30s;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ckpt-lab-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Starts `argv` in `cwd` with stdin from a pipe of ours and stdout/stderr into files there.
pid_t start(const std::vector<std::string>& argv, const fs::path& cwd, int stdin_fd) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) < 0) _exit(126);
    int out = open("stdout.txt", O_WRONLY | O_CREAT | O_APPEND, 0600);
    int err = open("stderr.txt", O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (out < 0 || err < 0) _exit(126);
    dup2(stdin_fd, 0);
    dup2(out, 1);
    dup2(err, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Runs the worker alone, uninterrupted, on `lines`; returns the output file it writes.
std::string uninterrupted_output(const std::vector<std::string>& lines) {
  TempDir dir;
  std::string input;
  for (auto& l : lines) input += l + "\n";
  std::ofstream(dir.path() / "input.txt") << input;
  int in = open((dir.path() / "input.txt").c_str(), O_RDONLY | O_CLOEXEC);
  pid_t pid = start({LAB_WORKER, "expected.txt"}, dir.path(), in);
  close(in);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return slurp(dir.path() / "expected.txt");
}

// A running monitor, fed through a pipe.
class LabRun {
 public:
  LabRun(std::vector<std::string> argv, const fs::path& dir) : dir_(dir) {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    monitor_ = start(argv, dir, fds[0]);
    close(fds[0]);
    input_ = fds[1];
  }
  ~LabRun() {
    if (input_ >= 0) close(input_);
    if (monitor_ > 0) {
      kill(monitor_, SIGKILL);
      waitpid(monitor_, nullptr, 0);
    }
  }

  // Sends one line and waits until the worker has handled it and waits for the next one.
  pid_t send(const std::string& line) {
    std::string l = line + "\n";
    EXPECT_EQ(write(input_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
    return wait_idle();
  }

  // The worker (child of the monitor) once the pipe is empty and it is blocked reading stdin.
  // A read that took the last byte returns at once, so a worker seen blocked in read(0) after
  // the pipe emptied has finished everything it was sent (including its checkpoint).
  pid_t wait_idle() {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int pending = 0;
      ioctl(input_, FIONREAD, &pending);
      if (pending == 0) {
        for (pid_t child : children(monitor_))
          if (slurp(fs::path("/proc") / std::to_string(child) / "syscall").starts_with("0 0x0 "))
            return child;
      }
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "worker did not come back to reading stdin; stderr:\n"
                  << slurp(dir_ / "stderr.txt");
    return -1;
  }

  // Sends the final line and returns the monitor's exit status.
  int finish(const std::string& line) {
    std::string l = line + "\n";
    EXPECT_EQ(write(input_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
    close(input_);
    input_ = -1;
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(monitor_, &status, WNOHANG) == monitor_) {
        monitor_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "monitor did not exit";
    return -1;
  }

  // Kills the waiting worker from outside and waits for its replacement.
  void kill_worker() {
    pid_t victim = wait_idle();
    ASSERT_GT(victim, 0);
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pid_t now = wait_idle();
      if (now != victim) return;
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "worker was not restarted";
  }

 private:
  static std::vector<pid_t> children(pid_t parent) {
    std::vector<pid_t> out;
    for (auto& e : fs::directory_iterator("/proc")) {
      std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string stat = slurp(e.path() / "stat");
      auto close_paren = stat.rfind(')');
      if (close_paren == std::string::npos) continue;
      std::istringstream rest(stat.substr(close_paren + 2));
      char state;
      pid_t ppid;
      if (rest >> state >> ppid && ppid == parent) out.push_back(std::stoi(name));
    }
    return out;
  }

  fs::path dir_;
  pid_t monitor_ = -1;
  int input_ = -1;
};

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
