#pragma once
// Interrupted system calls on x86-64: a thread stopped in one holds a -ERESTART* code (or, for
// some calls, EINTR) that the kernel would turn into a restart on its way out; a thread that is
// let go or restored by ckpt must repeat the call itself so that the program never sees EINTR.
#include <cstdint>
#include <span>

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

}  // namespace ckpt::arch
