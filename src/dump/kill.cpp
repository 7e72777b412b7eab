#include "dump/kill.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "common/scoped_fd.hpp"
#include "proc/stat.hpp"

namespace ckpt {
namespace {

using Clock = std::chrono::steady_clock;

// The signal goes to the process the dump froze, not to one that took its PID since: the
// processes are still held (traced and stopped) when their pidfds are opened.
Status send_kill(pid_t pid) {
  ScopedFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (fd.valid() && ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0) == 0) return {};
  if (::kill(pid, SIGKILL) == 0 || errno == ESRCH) return {};
  return sys_error(fmt::format("kill pid {} with SIGKILL", pid));
}

// Reaps a traced thread once it is dead; true when it is (or is no longer ours to wait for).
bool reaped(pid_t tid) {
  int status = 0;
  pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
  if (r == tid) return WIFEXITED(status) || WIFSIGNALED(status);
  return r < 0 && errno == ECHILD;
}

// Dead: gone, a zombie, or dying with no thread left to run.
bool dead(pid_t pid) {
  auto st = proc::read_stat(pid);
  return !st.ok() || st->state == 'Z' || st->state == 'X';
}

}  // namespace

Status kill_and_wait(const std::vector<KillTarget>& targets, std::chrono::milliseconds timeout) {
  for (auto& t : targets) CKPT_TRY(send_kill(t.pid));
  std::vector<pid_t> threads;
  for (auto& t : targets) threads.insert(threads.end(), t.traced.begin(), t.traced.end());
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::erase_if(threads, reaped);
    bool all_dead = threads.empty() && std::all_of(targets.begin(), targets.end(),
                                                   [](auto& t) { return dead(t.pid); });
    if (all_dead) return {};
    if (Clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& t : targets) {
    if (dead(t.pid)) continue;
    auto st = proc::read_stat(t.pid);
    return errorf("pid {} did not die of SIGKILL within {} ms (state {}): it runs on", t.pid,
                  timeout.count(), st.ok() ? st->state : '?');
  }
  return errorf("thread {} did not die of SIGKILL within {} ms", threads.front(), timeout.count());
}

}  // namespace ckpt
