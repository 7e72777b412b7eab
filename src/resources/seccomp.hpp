#pragma once
// Seccomp: strict mode and filter programs, per thread. Filters form a tree (a thread's chain is
// inherited from its creator and extended): each filter is saved once with its parent and every
// thread names the newest filter of its chain. Needs CAP_SYS_ADMIN in ckpt (the kernel only lets
// such a tracer read filters or suspend them).
//
// Injected calls must never meet the process's own filter: at dump, every thread under seccomp
// is traced with PTRACE_O_SUSPEND_SECCOMP from the moment all threads are stopped; at restore,
// the threads keep that option from the installation of their filters until they are let go.
#include "resources/context.hpp"

namespace ckpt::seccomp {

// After every thread is stopped and before anything is injected: suspends seccomp for the
// threads that use it.
Status suspend_for_dump(DumpContext& ctx);

// Records each thread's mode and filter chain in ctx.image["seccomp"].
Status dump(DumpContext& ctx);

// Puts each thread back in strict mode or installs its filters, oldest first. Runs while the
// process still has the restorer's privileges (a filter needs no_new_privs or CAP_SYS_ADMIN).
Status restore(RestoreContext& ctx);

}  // namespace ckpt::seccomp
