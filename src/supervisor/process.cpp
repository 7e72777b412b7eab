#include "supervisor/process.hpp"

#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "common/child_process.hpp"

namespace ckpt::supervisor {

void say(std::string_view text) {
  std::string line = fmt::format("ckpt run: {}\n", text);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

Result<pid_t> spawn_program(const std::vector<std::string>& argv) {
  if (argv.empty()) return make_error("no program to run");
  // The child reports exec's errno through a close-on-exec pipe: EOF means exec succeeded.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd rd(p[0]), wr(p[1]);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(args[0], args.data());
    int err = errno;
    (void)!::write(wr.get(), &err, sizeof err);
    ::_exit(127);
  }
  wr.reset();
  int err = 0;
  ssize_t n;
  do {
    n = ::read(rd.get(), &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof err)) {
    (void)wait_end(pid);
    return sys_error(err, fmt::format("cannot run '{}'", argv[0]));
  }
  return pid;
}

Result<SignalReader> SignalReader::open(const std::vector<int>& signals) {
  sigset_t set, old;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  if (::sigprocmask(SIG_BLOCK, &set, &old) < 0) return sys_error("sigprocmask");
  int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) {
    Error e = sys_error("signalfd");
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    return e;
  }
  return SignalReader(ScopedFd(fd), old);
}

SignalReader::SignalReader(SignalReader&& o) noexcept
    : fd_(std::move(o.fd_)), old_(o.old_), restore_(std::exchange(o.restore_, false)) {}

SignalReader::~SignalReader() {
  if (restore_) ::sigprocmask(SIG_SETMASK, &old_, nullptr);
}

std::vector<SignalReader::Received> SignalReader::drain() {
  std::vector<Received> out;
  signalfd_siginfo si;
  while (::read(fd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    out.push_back({static_cast<int>(si.ssi_signo), si.ssi_code, static_cast<pid_t>(si.ssi_pid)});
  }
  return out;
}

Result<IntervalTimer> IntervalTimer::open(double interval_seconds) {
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) return sys_error("timerfd_create");
  IntervalTimer t{ScopedFd(fd)};
  if (interval_seconds > 0) {
    itimerspec spec{};
    double whole = std::floor(interval_seconds);
    spec.it_interval.tv_sec = static_cast<time_t>(whole);
    spec.it_interval.tv_nsec = static_cast<long>((interval_seconds - whole) * 1e9);
    if (spec.it_interval.tv_sec == 0 && spec.it_interval.tv_nsec == 0) spec.it_interval.tv_nsec = 1;
    spec.it_value = spec.it_interval;
    if (::timerfd_settime(fd, 0, &spec, nullptr) < 0) return sys_error("timerfd_settime");
  }
  return t;
}

bool IntervalTimer::consume() {
  uint64_t n = 0;
  return ::read(fd_.get(), &n, sizeof n) == static_cast<ssize_t>(sizeof n) && n > 0;
}

}  // namespace ckpt::supervisor
