#pragma once
// Threads: CPU state (general registers, full xstate, fs/gs base) and the per-thread kernel state
// (signal mask, alternate signal stack, clear-child-tid address, robust futex list, rseq).
#include <map>

#include "arch/x86_64/syscall_restart.hpp"
#include "resources/context.hpp"

namespace ckpt::threads {

// The threads of `pid` that sleep in restart_syscall now, by TID, with the call each resumes as
// where it sleeps names it: read before the freeze (a stopped thread's wchan is the stop's), for
// the threads whose code does not name the call (dump, arch::restarted_call_sleeping_in).
std::map<pid_t, arch::ResumedCall> resumed_calls(pid_t pid);

// Records every thread of ctx.threads in ctx.image["threads"].
Status dump(DumpContext& ctx);

// Creates the threads other than the main one in the puppet, with their old TIDs, and sets the
// per-thread kernel state of all of them. Registers are set by set_final_state.
Status restore(RestoreContext& ctx);

// The puppet inherited the restorer's rseq registration, whose area is about to be unmapped: the
// kernel would raise SIGSEGV at the next return to user space. Unregister it first.
Status drop_puppet_rseq(RestoreContext& ctx);

// Gives every thread its saved registers, xstate and signal mask. The main thread's registers
// go to ctx.main_remote so that they take effect when its last injected call returns.
Status set_final_state(RestoreContext& ctx);

}  // namespace ckpt::threads
