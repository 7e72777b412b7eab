#pragma once
// Stopping a process for a dump: every thread seized and interrupted, and a place to run injected
// system calls through. Used by the dump's freeze and by the pre-copy's short stops
// (dump/pre_copy.hpp).
#include <cstdint>

#include "common/result.hpp"
#include "resources/context.hpp"

namespace ckpt {

// Stops every thread of ctx's process (PTRACE_SEIZE, PTRACE_INTERRUPT), re-reading its task list
// until no new thread appears, threads[0] the main thread; a signal taken from a thread by the
// stop is held (signals::hold_taken) until put back.
Status freeze(DumpContext& ctx);
// Stops thread `tid` of ctx's process alone, as freeze() stops each (threads[0] is then that
// thread): enough for injected calls that need no other thread to hold still.
Status freeze_thread(DumpContext& ctx, pid_t tid);

// A `syscall` instruction in ctx's process (in its vdso) for injected calls; the vdso's bytes
// and hash go into ctx.tree's image the first time.
Result<uint64_t> find_syscall_insn(DumpContext& ctx);

}  // namespace ckpt
