#pragma once
// Interrupted system calls on x86-64: a thread stopped in one holds a -ERESTART* code (or, for
// some calls, EINTR) that the kernel would turn into a restart on its way out; a thread that is
// let go or restored by ckpt must repeat the call itself so that the program never sees EINTR.
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "arch/x86_64/regs.hpp"

namespace ckpt::arch {

// Calls that end with a plain EINTR when a tracer stops the thread, even without a handler.
bool fails_with_eintr_on_stop(long nr);

// Whether rax holds one of the kernel's internal -ERESTART* codes after a stop in a syscall.
bool is_interrupted_syscall(const Regs& r);

// The registers a thread must resume with so that an interrupted system call is restarted, for a
// thread that leaves from a syscall stop, which the kernel's restart logic never sees: the restart
// is made explicit (rip back over the syscall instruction). A handler's signal that comes before
// the call runs again does not end it with EINTR: only for a thread that cannot be brought into
// signal delivery (a vanished tracer's rt_sigreturn frame).
// `restart_block_ok` says whether the kernel still holds the thread's restart block (true for a
// live thread, false for a restored one, where the original call is repeated instead).
Regs regs_for_restart(const Regs& r, bool restart_block_ok);

// The same registers in the form the kernel's signal delivery expects, for a thread that leaves
// from a stop inside it (PTRACE_EVENT_STOP, a signal-delivery stop): rip after the call, a restart
// code in rax. Without a signal the kernel repeats the call; a handler's signal ends it with EINTR
// or restarts it as the call and SA_RESTART say, exactly as for a thread never stopped.
Regs regs_for_kernel_restart(const Regs& r, bool restart_block_ok);

// A call cut short by an earlier stop (a dump that let the program go, a job-control stop) that
// the kernel resumes through its restart block runs as restart_syscall, with the original
// call's arguments but not its number: whether `r` is a thread interrupted in one.
bool in_restart_syscall(const Regs& r);
// The calls the kernel resumes that way after a stop: nanosleep, clock_nanosleep, futex, poll.
bool resumes_through_restart_block(long nr);
// The call such a thread was making, read from `code`, the bytes just before its syscall
// instruction, where the call's number was loaded into eax (`mov $nr, %eax`, or `%rax`): one of
// the calls the kernel restarts that way (nanosleep, clock_nanosleep, futex, poll). 0 when the
// code does not say: a restored thread cannot be given its restart block back, and repeating
// restart_syscall there would only fail with EINTR.
long restarted_call(std::span<const uint8_t> code);
// The same call named by where its thread sleeps in the kernel (/proc/PID/task/TID/wchan, read
// while it sleeps in restart_syscall) and its first argument, for code that does not say (glibc's
// generic syscall() takes the number from a register). Only these four calls leave a restart
// block, so the sleeping function names the call; nanosleep and clock_nanosleep share theirs (or,
// resumed, show only the restart's caller) and differ in the first argument: a clock id, or the
// request's address (never in the first page). 0 when the name is none of theirs.
long restarted_call_sleeping_in(std::string_view wchan, uint64_t first_arg);

// A thread seen sleeping in restart_syscall before the freeze (/proc/PID/task/TID/syscall and
// wchan): the call it resumes, and the arguments, stack and place the kernel showed.
struct ResumedCall {
  long nr = 0;
  std::array<uint64_t, 6> args{};
  uint64_t sp = 0, pc = 0;
  // Whether a stopped thread with registers `r` is still in this call: the same place, stack
  // and arguments (a call's return clobbers rax only, but a new call at the same place with the
  // same six arguments would be the same call again).
  bool is_in(const Regs& r) const;
};

}  // namespace ckpt::arch
