#pragma once
// Stopping every thread of the target with ptrace, and letting them go again.
//
// ptrace rather than a signal the threads would catch: a thread stopped by PTRACE_INTERRUPT
// runs no handler, so a system call it was blocked in is restarted as if nothing happened, even
// the calls a signal handler would end with EINTR despite SA_RESTART (nanosleep, poll,
// epoll_wait...), and it does not matter which signals the thread blocks.
#include <sys/types.h>

#include <memory>
#include <vector>

#include "common/result.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt::rollback {

struct FrozenThread {
  ptrace::Tracee tracee;
  // A signal the thread was about to take when it stopped (a signal-delivery stop), still
  // undelivered; 0 when it stopped for our interrupt.
  int pending_sig = 0;
  // Whether it is still in that signal-delivery stop (injected calls resume it).
  bool in_delivery_stop = false;
  // Registers to resume with, set by a rollback; otherwise the thread resumes as it was.
  bool has_final = false;
  ptrace::Regs final_regs{};

  pid_t tid() const { return tracee.tid(); }
};

class Freezer {
 public:
  // Seizes and stops every thread of `pid`, re-reading /proc/PID/task until no new thread
  // appears. Fails with EBUSY when another tracer holds a thread, leaving everything running.
  static Result<Freezer> freeze(pid_t pid);

  Freezer(Freezer&&) noexcept = default;
  Freezer& operator=(Freezer&&) noexcept = default;
  ~Freezer();

  std::vector<std::unique_ptr<FrozenThread>>& threads() { return threads_; }
  FrozenThread* find(pid_t tid);
  // Adds a thread that was created stopped (a recreated thread).
  void adopt(ptrace::Tracee t);
  // Forgets a thread that has exited.
  void forget(pid_t tid);

  // Lets every thread go. A thread with final registers gets them; the others resume where they
  // were, with an interrupted system call restarted. Pending signals are delivered, except the
  // synchronous ones (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) when `drop_faults`: after a
  // rollback, the fault they report belongs to a past that no longer exists.
  Status release(bool drop_faults);

 private:
  explicit Freezer(pid_t pid) : pid_(pid) {}
  Status stop_one(pid_t tid);

  pid_t pid_ = 0;
  std::vector<std::unique_ptr<FrozenThread>> threads_;
};

}  // namespace ckpt::rollback
