#pragma once
// Process-wide state: the mm layout (code, data, brk, stack, arguments, environment, auxv, exe
// link), cwd, umask, rlimits, personality, credentials, and dumpable (timers are in timers.hpp).
#include "resources/context.hpp"

namespace ckpt::process {

Status dump(DumpContext& ctx);

// Refuses images whose credentials the caller could not have (no privilege gain by restore).
Status check_before_restore(const schema::ProcessRecord& proc);

// Inside the puppet before takeover: cwd, umask, rlimits, personality.
Status restore_in_puppet(const schema::ProcessRecord& proc);

// After memory is in place: the mm layout (PR_SET_MM_MAP with the exe fd) and dumpable.
Status restore_mm(RestoreContext& ctx, int exe_fd);

// Near the end: groups, gids, uids (when restoring as root), then dumpable.
Status restore_credentials(RestoreContext& ctx);

}  // namespace ckpt::process
