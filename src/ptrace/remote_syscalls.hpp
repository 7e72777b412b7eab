#pragma once
// RemoteSyscalls: runs system calls inside a stopped tracee, as if the tracee had made them.
//
// Construction saves the thread's registers and signal mask; destruction puts them back, so the
// thread continues exactly where it was. The saved registers are first adjusted the way the
// kernel would have adjusted them had no signal come: a thread stopped inside an interrupted
// system call holds -ERESTART* in rax, and the kernel only turns that into a restart on its way
// out of signal handling. Our injected calls leave through the syscall-exit path instead, so we
// make the restart explicit (rip back over the syscall instruction, rax = the call number).
//
// Calls go through an existing `syscall` instruction in the tracee (its vdso, or the restorer's
// trampoline page), so nothing in its memory is written. All signals are blocked while calls run
// so that none is delivered (or lost) in between.
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <span>

#include "common/result.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt::ptrace {

// The registers a thread must resume with so that an interrupted system call is restarted.
// `restart_block_ok` says whether the kernel still holds the thread's restart block (true for a
// live thread, false for a restored one, where the original call is repeated instead).
Regs regs_for_restart(const Regs& r, bool restart_block_ok);

// Whether rax holds one of the kernel's internal -ERESTART* codes after a stop in a syscall.
bool is_interrupted_syscall(const Regs& r);

class RemoteSyscalls {
 public:
  // `syscall_insn` is the address of a `syscall` (0f 05) instruction executable in the tracee.
  static Result<RemoteSyscalls> start(Tracee& t, uint64_t syscall_insn);
  RemoteSyscalls(RemoteSyscalls&& o) noexcept;
  RemoteSyscalls(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(RemoteSyscalls&&) = delete;
  ~RemoteSyscalls();

  // Runs one system call; a negative kernel return becomes an Error naming the call.
  Result<long> call(const char* name, long nr, std::array<uint64_t, 6> args = {});
  // Same, but returns the raw kernel value (negative errno) without judging it.
  Result<long> call_raw(long nr, std::array<uint64_t, 6> args = {});

  // The registers the thread will get back.
  const Regs& saved_regs() const { return saved_; }
  // Replace what the destructor restores (restore sets the final registers this way).
  void set_final(const Regs& r, uint64_t mask);
  // Gives up without restoring anything (the tracee has been killed).
  void abandon() { done_ = true; }
  // Puts the saved state back now; later calls are not allowed.
  Status finish();

  Tracee& tracee() { return *t_; }

 private:
  RemoteSyscalls(Tracee& t, uint64_t insn, Regs saved, uint64_t mask)
      : t_(&t), insn_(insn), saved_(saved), saved_mask_(mask) {}
  Result<StopInfo> run_to_syscall_stop();

  Tracee* t_ = nullptr;
  uint64_t insn_ = 0;
  Regs saved_{};
  uint64_t saved_mask_ = 0;
  bool done_ = false;
};

}  // namespace ckpt::ptrace
