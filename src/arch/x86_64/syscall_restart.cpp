// How a thread stopped inside a system call is made to repeat it when it runs again (x86-64).
#include "arch/x86_64/syscall_restart.hpp"

#include <sys/syscall.h>
#include <time.h>

#include <cerrno>

namespace ckpt::arch {
namespace {

// The kernel's internal restart codes (include/linux/errno.h); never seen by user space.
constexpr long kERESTARTSYS = 512;
constexpr long kERESTARTNOINTR = 513;
constexpr long kERESTARTNOHAND = 514;
constexpr long kERESTART_RESTARTBLOCK = 516;

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

Regs regs_for_kernel_restart(const Regs& r, bool restart_block_ok) {
  Regs out = r;
  if (!is_interrupted_syscall(r)) return out;
  long rax = static_cast<long>(r.rax);
  bool eintr_on_stop = rax == -EINTR;
  bool lost_restart_block = rax == -kERESTART_RESTARTBLOCK && !restart_block_ok;
  // A call that failed only because we stopped it, or whose restart block is gone, ends with
  // EINTR on a handler's signal and is repeated otherwise: what -ERESTARTNOHAND asks for.
  if (eintr_on_stop || lost_restart_block) out.rax = static_cast<uint64_t>(-kERESTARTNOHAND);
  if (lost_restart_block) sleep_for_what_is_left(out);
  return out;
}

bool in_restart_syscall(const Regs& r) {
  return static_cast<long>(r.orig_rax) == SYS_restart_syscall && is_interrupted_syscall(r);
}

bool resumes_through_restart_block(long nr) {
  return nr == SYS_nanosleep || nr == SYS_clock_nanosleep || nr == SYS_futex || nr == SYS_poll;
}

long restarted_call(std::span<const uint8_t> code) {
  auto imm32 = [&](size_t at) {
    return uint32_t(code[at]) | uint32_t(code[at + 1]) << 8 | uint32_t(code[at + 2]) << 16 |
           uint32_t(code[at + 3]) << 24;
  };
  // The load nearest the syscall instruction is the one that counts.
  for (size_t end = code.size(); end >= 5; --end) {
    size_t at = end - 4;
    if (code[at - 1] == 0xb8 && resumes_through_restart_block(imm32(at)))
      return imm32(at);  // mov $imm32, %eax
    if (end >= 7 && code[at - 3] == 0x48 && code[at - 2] == 0xc7 && code[at - 1] == 0xc0 &&
        resumes_through_restart_block(imm32(at)))  // mov $imm32, %rax
      return imm32(at);
  }
  return 0;
}

long restarted_call_sleeping_in(std::string_view wchan, uint64_t first_arg) {
  // Clock ids are small; the first page is never mapped (mmap_min_addr, 4 KiB at least here).
  constexpr uint64_t kLowestAddress = 4096;
  auto has = [&](std::string_view part) { return wchan.find(part) != std::string_view::npos; };
  if (has("futex")) return SYS_futex;
  if (has("poll")) return SYS_poll;
  // CPU-time and alarm clocks sleep in functions of their own, reached by clock_nanosleep only.
  if (has("cpu_nanosleep") || has("cpu_nsleep") || has("alarm")) return SYS_clock_nanosleep;
  // The other clocks' restart jumps straight into the sleep, a scheduler function that wchan
  // skips: what shows is the restart's caller (do_syscall_64 here).
  if (has("nanosleep") || has("restart_syscall") || wchan == "do_syscall_64")
    return first_arg < kLowestAddress ? SYS_clock_nanosleep : SYS_nanosleep;
  return 0;
}

bool ResumedCall::is_in(const Regs& r) const {
  return r.rip == pc && r.rsp == sp &&
         args == std::array<uint64_t, 6>{r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9};
}

}  // namespace ckpt::arch
