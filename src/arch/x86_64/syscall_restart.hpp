#pragma once
// Interrupted system calls on x86-64: a thread stopped in one holds a -ERESTART* code (or, for
// some calls, EINTR) that the kernel would turn into a restart on its way out; a thread that is
// let go or restored by ckpt must repeat the call itself so that the program never sees EINTR.
#include "arch/x86_64/regs.hpp"

namespace ckpt::arch {

// Calls that end with a plain EINTR when a tracer stops the thread, even without a handler.
bool fails_with_eintr_on_stop(long nr);

// Whether rax holds one of the kernel's internal -ERESTART* codes after a stop in a syscall.
bool is_interrupted_syscall(const Regs& r);

// The registers a thread must resume with so that an interrupted system call is restarted.
// `restart_block_ok` says whether the kernel still holds the thread's restart block (true for a
// live thread, false for a restored one, where the original call is repeated instead).
Regs regs_for_restart(const Regs& r, bool restart_block_ok);

}  // namespace ckpt::arch
