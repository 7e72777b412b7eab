#pragma once
// Process-wide state: the mm layout (code, data, brk, stack, arguments, environment, auxv, exe
// link), cwd, umask, rlimits, personality, credentials, and dumpable (timers are in timers.hpp).
#include "resources/context.hpp"

namespace ckpt::process {

Status dump(DumpContext& ctx);

// Refuses images whose credentials the caller could not have (no privilege gain by restore), and
// hard limits above the caller's own when it lacks CAP_SYS_RESOURCE.
Status check_before_restore(const schema::ProcessRecord& proc);

// Inside the puppet before takeover: cwd (a removed one from its handed, recreated inode), umask,
// rlimits, personality.
Status restore_in_puppet(const schema::ProcessRecord& proc, const HandedFds& handed);

// After memory is in place: the mm layout (PR_SET_MM_MAP with the exe fd) and dumpable.
Status restore_mm(RestoreContext& ctx, int exe_fd);

// Near the end, in each thread through `rs`: groups, gids, uids (when restoring as root). The
// order with capabilities and securebits is settings::restore_privileges's.
Status restore_ids(RestoreContext& ctx, ptrace::RemoteSyscalls& rs);

// After every thread's ids: the dumpable flag (a change of uid resets it).
Status restore_dumpable(RestoreContext& ctx);

}  // namespace ckpt::process
