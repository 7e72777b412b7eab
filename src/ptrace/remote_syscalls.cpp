#include "ptrace/remote_syscalls.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace ckpt::ptrace {
namespace {

// The kernel's internal restart codes (include/linux/errno.h); never seen by user space.
constexpr long kERESTARTSYS = 512;
constexpr long kERESTARTNOINTR = 513;
constexpr long kERESTARTNOHAND = 514;
constexpr long kERESTART_RESTARTBLOCK = 516;
constexpr int kSyscallInsnLen = 2;

}  // namespace

// Calls the kernel ends with a plain EINTR when a tracer stops the thread, even with no signal
// handler (signal(7), "Interruption of system call ... by stop signals"): stopping a thread for a
// dump must not show, so they are repeated like the others.
bool fails_with_eintr_on_stop(long nr) {
  switch (nr) {
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
    case SYS_epoll_pwait2:
    case SYS_semop:
    case SYS_semtimedop:
    case SYS_rt_sigtimedwait:
    case SYS_io_getevents:
      return true;
    default:
      return false;
  }
}

bool is_interrupted_syscall(const Regs& r) {
  long nr = static_cast<long>(r.orig_rax);
  if (nr < 0) return false;
  long rax = static_cast<long>(r.rax);
  return rax == -kERESTARTSYS || rax == -kERESTARTNOINTR || rax == -kERESTARTNOHAND ||
         rax == -kERESTART_RESTARTBLOCK || (rax == -EINTR && fails_with_eintr_on_stop(nr));
}

// A relative sleep cut short by a stop has had its remaining time written to its `rem` argument
// by the kernel. Without the kernel's restart block (gone after a restore), sleeping again for
// `rem` keeps the original deadline; the full request would oversleep. Absolute sleeps and calls
// without `rem` restart with their own arguments.
void sleep_for_what_is_left(Regs& out) {
  if (out.orig_rax == SYS_nanosleep && out.rsi != 0) {
    out.rdi = out.rsi;
  } else if (out.orig_rax == SYS_clock_nanosleep && !(out.rsi & TIMER_ABSTIME) && out.r10 != 0) {
    out.rdx = out.r10;
  }
}

Regs regs_for_restart(const Regs& r, bool restart_block_ok) {
  Regs out = r;
  if (!is_interrupted_syscall(r)) return out;
  long rax = static_cast<long>(r.rax);
  out.rip -= kSyscallInsnLen;
  bool via_restart_block = rax == -kERESTART_RESTARTBLOCK;
  out.rax = (via_restart_block && restart_block_ok) ? SYS_restart_syscall : r.orig_rax;
  if (via_restart_block && !restart_block_ok) sleep_for_what_is_left(out);
  // A syscall number in orig_rax would make the kernel look at rax for restart codes again.
  out.orig_rax = static_cast<uint64_t>(-1);
  return out;
}

Result<RemoteSyscalls> RemoteSyscalls::start(Tracee& t, uint64_t syscall_insn) {
  CKPT_TRY_ASSIGN(Regs regs, t.regs());
  CKPT_TRY_ASSIGN(uint64_t mask, t.signal_mask());
  CKPT_TRY(t.set_signal_mask(~uint64_t{0}));
  return RemoteSyscalls(t, syscall_insn, regs_for_restart(regs, true), mask);
}

RemoteSyscalls::RemoteSyscalls(RemoteSyscalls&& o) noexcept
    : t_(o.t_), insn_(o.insn_), saved_(o.saved_), saved_mask_(o.saved_mask_), done_(o.done_) {
  o.done_ = true;
}

RemoteSyscalls::~RemoteSyscalls() {
  if (!done_) {
    Status st = finish();
    if (!st.ok()) log::error("ptrace", "restoring tid {}: {}", t_->tid(), st.error().message);
  }
}

void RemoteSyscalls::set_final(const Regs& r, uint64_t mask) {
  saved_ = r;
  saved_mask_ = mask;
}

Status RemoteSyscalls::finish() {
  if (done_) return {};
  done_ = true;
  CKPT_TRY(t_->set_regs(saved_));
  return t_->set_signal_mask(saved_mask_);
}

Result<StopInfo> RemoteSyscalls::run_to_syscall_stop() {
  for (;;) {
    CKPT_TRY(t_->resume_syscall());
    CKPT_TRY_ASSIGN(StopInfo stop, t_->wait_stop());
    log::debug("ptrace", "tid {}: stop {:#x}", t_->tid(), stop.status);
    if (stop.exited()) {
      done_ = true;
      t_->release();
      return errorf("tid {} died during an injected system call (status {:#x})", t_->tid(),
                    stop.status);
    }
    if (stop.syscall_stop()) return stop;
    int sig = stop.stop_signal();
    bool fault =
        sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP;
    if (fault && stop.event() == 0) {
      auto regs = t_->regs();
      return errorf("tid {}: signal {} during an injected system call at rip {:#x}", t_->tid(), sig,
                    regs.ok() ? regs->rip : 0);
    }
    // Only SIGKILL and SIGSTOP pass the blocked mask; a group-stop is resumed through.
    log::debug("ptrace", "tid {}: stop {:#x} during injected syscall", t_->tid(), stop.status);
  }
}

Result<long> RemoteSyscalls::call_raw(long nr, std::array<uint64_t, 6> args) {
  log::debug("ptrace", "tid {}: syscall {}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})", t_->tid(),
             nr, args[0], args[1], args[2], args[3], args[4], args[5]);
  if (done_) return errorf("tid {}: injected syscall after finish", t_->tid());
  Regs r = saved_;
  r.rip = insn_;
  r.rax = static_cast<uint64_t>(nr);
  r.orig_rax = static_cast<uint64_t>(-1);
  r.rdi = args[0];
  r.rsi = args[1];
  r.rdx = args[2];
  r.r10 = args[3];
  r.r8 = args[4];
  r.r9 = args[5];
  CKPT_TRY(t_->set_regs(r));
  CKPT_TRY_ASSIGN(StopInfo entry_stop, run_to_syscall_stop());
  CKPT_TRY_ASSIGN(StopInfo exit_stop, run_to_syscall_stop());
  (void)entry_stop;
  (void)exit_stop;
  CKPT_TRY_ASSIGN(Regs after, t_->regs());
  return static_cast<long>(after.rax);
}

Result<long> RemoteSyscalls::call(const char* name, long nr, std::array<uint64_t, 6> args) {
  CKPT_TRY_ASSIGN(long ret, call_raw(nr, args));
  if (ret < 0 && ret > -4096)
    return sys_error(static_cast<int>(-ret), fmt::format("{} in tid {}", name, t_->tid()));
  return ret;
}

}  // namespace ckpt::ptrace
