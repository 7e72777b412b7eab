#pragma once
// Running the rollback programs: a child with its stdin, stdout and stderr on pipes of ours, read
// line by line with a deadline, killed if it is late.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace rbtest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return;
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      execv(args[0], args.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
    for (int fd : {in_, out_, err_})
      if (fd >= 0) close(fd);
  }

  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_text_; }
  const std::string& err() const { return err_text_; }

  bool write(const std::string& s) {
    return ::write(in_, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  }
  void close_stdin() {
    close(in_);
    in_ = -1;
  }

  // Reads until stdout holds `text` (after `from`); false at the deadline or end of output.
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout = 60s, size_t from = 0) {
    auto deadline = Clock::now() + timeout;
    while (out_text_.find(text, from) == std::string::npos) {
      if (!pump(deadline)) return false;
    }
    return true;
  }

  // Reads until stdout is closed by everyone who held it; false at the deadline.
  bool wait_stdout_closed(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (out_ >= 0)
      if (!pump(deadline)) return out_ < 0;
    return true;
  }

  // Reads everything until the child ends (or is killed at the deadline); its wait status.
  int finish(std::chrono::milliseconds timeout = 120s) {
    auto deadline = Clock::now() + timeout;
    while (pump(deadline)) {
    }
    if (!status_) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &st, 0);
        err_text_ += "\n[killed at the deadline]";
      }
      status_ = st;
    }
    return *status_;
  }

 private:
  // One poll round; false once both outputs are closed or the deadline passed.
  bool pump(Clock::time_point deadline) {
    if (out_ < 0 && err_ < 0) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (poll(p, 2, static_cast<int>(left.count())) <= 0) return false;
    int* fds[2] = {&out_, &err_};
    std::string* texts[2] = {&out_text_, &err_text_};
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents) continue;
      char buf[4096];
      ssize_t n = read(*fds[i], buf, sizeof buf);
      if (n > 0) {
        texts[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(*fds[i]);
        *fds[i] = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_text_, err_text_;
  std::optional<int> status_;
};

inline std::string describe(int st) {
  if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "killed by signal " + std::to_string(WTERMSIG(st));
  return "status " + std::to_string(st);
}

}  // namespace rbtest
