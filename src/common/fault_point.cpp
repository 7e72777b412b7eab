#include "common/fault_point.hpp"

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace ckpt::fault {
namespace {

// Process-wide by nature: the hook stands for "this process dies here", whichever object is
// working at the time. Set once from the environment, then only counted.
struct Hook {
  long kill_at = 0;
  pid_t victim = 0;  // 0: this process
  int signal = SIGKILL;
  long wait_ms = 0;
  long step_us = 0;
  int count_fd = -1;
  const char* sent_file = nullptr;
  std::atomic<long> seen{0};
};

Hook* load() {
  static Hook hook;
  if (const char* n = std::getenv("CKPT_FAULT_KILL_AT")) hook.kill_at = std::atol(n);
  if (const char* v = std::getenv("CKPT_FAULT_KILL_PID")) hook.victim = std::atoi(v);
  if (const char* s = std::getenv("CKPT_FAULT_SIGNAL")) hook.signal = std::atoi(s);
  hook.sent_file = std::getenv("CKPT_FAULT_SENT");
  if (const char* w = std::getenv("CKPT_FAULT_WAIT_MS")) hook.wait_ms = std::atol(w);
  if (const char* u = std::getenv("CKPT_FAULT_SLOW_STEP_US")) hook.step_us = std::atol(u);
  if (const char* f = std::getenv("CKPT_FAULT_COUNT"))
    hook.count_fd = ::open(f, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  return &hook;
}

Hook& hook() {
  static Hook* h = load();
  return *h;
}

// Sleeps the whole time even when signals come; errno as it was.
void pause_for(timespec pause) {
  int saved_errno = errno;
  while (::nanosleep(&pause, &pause) < 0 && errno == EINTR) {
  }
  errno = saved_errno;
}

}  // namespace

void point(const char* what, const char* detail) {
  Hook& h = hook();
  if (h.kill_at <= 0 && h.count_fd < 0) return;
  int saved_errno = errno;  // points sit next to system calls whose errno callers read
  long n = ++h.seen;
  if (h.count_fd >= 0) {
    std::string line = fmt::format("{} {} {} {}\n", n, ::getpid(), what, detail);
    (void)!::write(h.count_fd, line.data(), line.size());
  }
  if (n == h.kill_at) {
    int r = ::kill(h.victim > 0 ? h.victim : ::getpid(), h.signal);
    if (h.sent_file) {
      std::string what = r == 0 ? "sent\n" : fmt::format("{}\n", std::strerror(errno));
      int fd = ::open(h.sent_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd >= 0) {
        (void)!::write(fd, what.data(), what.size());
        ::close(fd);
      }
    }
    if (h.wait_ms > 0) pause_for({h.wait_ms / 1000, (h.wait_ms % 1000) * 1000000});
  }
  errno = saved_errno;
}

void before_step() {
  long us = hook().step_us;
  if (us > 0) pause_for({us / 1000000, (us % 1000000) * 1000});
}

}  // namespace ckpt::fault
