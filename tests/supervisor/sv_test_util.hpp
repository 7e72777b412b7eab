#pragma once
// Starting `ckpt run` from tests: only the fds we choose reach it, its output goes to files.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/temp_dir.hpp"

namespace ckpt::test {

namespace fs = std::filesystem;

using TempDir = ckpt::test_support::TempDir;

inline std::string slurp(const fs::path& p) {
  std::stringstream s;
  s << std::ifstream(p).rdbuf();
  return s.str();
}

inline size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// A child process with stdin from `in` (or /dev/null), stdout and stderr to files in `dir`.
class Proc {
 public:
  Proc(const fs::path& dir, std::vector<std::string> argv, const std::string& in = "/dev/null")
      : out_(dir / "out"), err_(dir / "err") {
    pid_ = ::fork();
    if (pid_ == 0) {
      int i = ::open(in.c_str(), O_RDONLY);
      int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(i, 0);
      ::dup2(o, 1);
      ::dup2(e, 2);
      ::close_range(3, ~0u, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Proc() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Waits up to `timeout`; the exit code (128+N for a signal), or -1 on timeout.
  int wait(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        done_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  bool running() {
    if (done_) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      done_ = true;
      code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    return !done_;
  }
  int code() const { return code_; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
  int code_ = -1;
  fs::path out_, err_;
};

// Runs a command to its end and returns {exit code, stdout + stderr}.
inline std::pair<int, std::string> run_cmd(std::vector<std::string> argv) {
  TempDir d;
  Proc p(d.path(), std::move(argv));
  int code = p.wait();
  return {code, p.out() + p.err()};
}

inline nlohmann::json run_state(const fs::path& store) {
  auto text = slurp(store / "run.json");
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

// Sends `sig` to the program `ckpt run` runs now. No program (it ended, or a recovery is under
// way) is a failure, never kill(0): that would signal the test's own process group, CTest and the
// CI script with it.
inline ::testing::AssertionResult signal_child(const fs::path& store, int sig) {
  pid_t child = run_state(store).value("child_pid", 0);
  if (child <= 0)
    return ::testing::AssertionFailure() << "no program runs: " << slurp(store / "run.json");
  if (::kill(child, sig) != 0)
    return ::testing::AssertionFailure() << "kill " << child << ": " << std::strerror(errno);
  return ::testing::AssertionSuccess();
}

// Waits until `pred` holds, up to `timeout`.
template <typename F>
bool eventually(F pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(20000)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace ckpt::test
