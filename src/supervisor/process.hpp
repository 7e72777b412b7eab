#pragma once
// The process side of `ckpt run`: starting the program, and the signals the supervisor waits on.
#include <signal.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::supervisor {

// One line "ckpt run: TEXT" straight to fd 2, which the program shares: no buffering that could
// interleave it with the program's output.
void say(std::string_view text);

// Starts argv[0] (searched in $PATH) as a child with the caller's stdin, stdout and stderr and
// an empty signal mask. Fails (and leaves no child) when the program cannot be executed: the
// error carries exec's errno, e.g. "cannot run 'nope': No such file or directory".
Result<pid_t> spawn_program(const std::vector<std::string>& argv);

// Blocks `signals` and reads them from a signalfd; the old mask comes back on destruction.
class SignalReader {
 public:
  static Result<SignalReader> open(const std::vector<int>& signals);
  SignalReader(SignalReader&& o) noexcept;
  SignalReader& operator=(SignalReader&&) = delete;
  ~SignalReader();

  int fd() const { return fd_.get(); }
  // Every pending signal's number and sender, without blocking.
  struct Received {
    int signo = 0;
    int code = 0;  // si_code: SI_USER for kill(2), SI_KERNEL for the terminal, ...
    pid_t sender = 0;
  };
  std::vector<Received> drain();

 private:
  SignalReader(ScopedFd fd, sigset_t old) : fd_(std::move(fd)), old_(old) {}
  ScopedFd fd_;
  sigset_t old_{};
  bool restore_ = true;
};

// A periodic monotonic timer on a timerfd; an interval of 0 disarms it.
class IntervalTimer {
 public:
  static Result<IntervalTimer> open(double interval_seconds);
  int fd() const { return fd_.get(); }
  // Consumes the expirations; true if the timer fired.
  bool consume();

 private:
  explicit IntervalTimer(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

}  // namespace ckpt::supervisor
