#pragma once
// Tracee: one thread held with PTRACE_SEIZE. Owning the attachment means detaching on every path:
// the destructor detaches, so an error anywhere leaves the thread running as before.
#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "arch/arch.hpp"
#include "common/result.hpp"

namespace ckpt::ptrace {

using Regs = arch::Regs;

// How a waited-for stop looks.
struct StopInfo {
  int status = 0;  // raw waitpid status
  bool exited() const;
  int stop_signal() const;  // WSTOPSIG, 0 if not stopped
  int event() const;        // PTRACE_EVENT_* in the high bits, 0 if none
  bool syscall_stop() const;
};

class Tracee {
 public:
  // Seizes the thread without stopping it. `options` are PTRACE_O_* flags.
  static Result<Tracee> seize(pid_t tid, unsigned long options = 0);
  // Takes over a thread that the kernel attached for us (PTRACE_O_TRACECLONE children), which
  // inherited the options of its creator's attachment.
  static Tracee adopt(pid_t tid, unsigned long options = 0);

  Tracee() = default;  // attached to nothing
  Tracee(Tracee&& o) noexcept;
  Tracee& operator=(Tracee&& o) noexcept;
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;
  ~Tracee();

  pid_t tid() const { return tid_; }
  unsigned long options() const { return options_; }
  // PTRACE_SETOPTIONS, replacing every option (the thread must be stopped).
  Status set_options(unsigned long options);

  // Stops the thread (PTRACE_INTERRUPT) and waits until it is in a ptrace stop, which `how`
  // receives: PTRACE_EVENT_STOP, or a signal-delivery stop if a signal came first.
  Status interrupt(StopInfo* how = nullptr);
  // Takes a thread from another ptrace stop (a signal-delivery stop whose signal is dropped, a
  // syscall stop) to PTRACE_EVENT_STOP without running any of its code: a ptrace trap clears a
  // pending interrupt, so it is asked again and the thread resumed into it.
  Status stop_in_signal_delivery();
  // Waits for the next stop or the exit of this thread (reaping dead sibling threads meanwhile).
  Result<StopInfo> wait_stop();
  // Resumes to the next syscall entry or exit (PTRACE_SYSCALL) with no signal.
  Status resume_syscall();
  Status resume();
  // Runs one instruction (PTRACE_SINGLESTEP) and waits for the stop after it.
  Status step();
  // Lets the thread run until it reaches code address `addr` (a breakpoint instruction put there
  // for the while and always taken out again) and leaves it stopped there, rip == addr. Fails if
  // it stops for anything else or is not there within `limit`; it is stopped again either way.
  // Other threads of the process must be stopped: they would stop at the breakpoint too.
  Status run_to(uint64_t addr, std::chrono::milliseconds limit);

  Result<Regs> regs() const;
  Status set_regs(const Regs& r);
  Result<std::vector<uint8_t>> xstate() const;
  Status set_xstate(const std::vector<uint8_t>& data);
  Result<uint64_t> signal_mask() const;
  Status set_signal_mask(uint64_t mask);
  // The thread's memory: process_vm_readv/writev, which see it as the thread does, then, with
  // `forced`, /proc/TID/mem, which also reaches pages the thread may not read or write.
  Status read_memory(uint64_t addr, void* buf, size_t len, bool forced = true) const;
  Status write_memory(uint64_t addr, const void* buf, size_t len, bool forced = true);

  // Lets the thread run on and forgets it. Also done by the destructor.
  Status detach();
  // Forgets the thread without detaching: when it has been killed.
  void release() { tid_ = 0; }
  // While on, PTRACE_O_TRACECLONE does not make waits poll: the caller's injected clone() makes a
  // process, not a thread, and only a thread of its own group can hold back this thread's exit.
  void set_clones_processes_only(bool on) { clones_processes_only_ = on; }

 private:
  Tracee(pid_t tid, unsigned long options) : tid_(tid), options_(options) {}
  Status wait_for_any_event();
  Result<std::optional<StopInfo>> wait_stop_until(std::chrono::steady_clock::time_point deadline);
  // The thread's stop or end if one is there to take now (parents_exit_seen() first), else none.
  Result<std::optional<StopInfo>> poll_stop();
  bool alone_untraced_clones() const;
  std::optional<StopInfo> parents_exit_seen() const;
  pid_t tid_ = 0;
  unsigned long options_ = 0;
  bool clones_processes_only_ = false;
};

}  // namespace ckpt::ptrace
