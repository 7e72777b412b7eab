#pragma once
// What the lab's tests share: temporary directories, starting programs with chosen stdio, and a
// monitor driven through a pipe (LabRun). Header-only: each test file is its own binary.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
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

#include "support/temp_dir.hpp"

namespace ckpt::labtest {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kTimeout = 30s;

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

using TempDir = ckpt::test_support::TempDir;

// Starts `argv` in `cwd` with stdin from a pipe of ours and stdout/stderr into files there.
inline pid_t start(const std::vector<std::string>& argv, const fs::path& cwd, int stdin_fd) {
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
    // Only stdio: an fd inherited from whatever runs the tests would be part of the checkpoint.
    close_range(3, ~0U, 0);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Runs the worker alone, uninterrupted, on `lines`; returns the output file it writes.
inline std::string uninterrupted_output(const std::vector<std::string>& lines) {
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

  // Kills the waiting worker from outside and waits for its replacement, which may have the
  // same PID (a whole-process restore): the pidfd tells when the victim itself is gone.
  void kill_worker() {
    pid_t victim = wait_idle();
    ASSERT_GT(victim, 0);
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, victim, 0));
    ASSERT_GE(pidfd, 0);
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    pollfd p{pidfd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kTimeout).count()));
    close(pidfd);
    ASSERT_EQ(n, 1) << "the killed worker did not end";
    EXPECT_GT(wait_idle(), 0) << "worker was not restarted";
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

}  // namespace ckpt::labtest
