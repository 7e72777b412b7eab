#pragma once
// What `ckpt run --resume` needs to take over from a supervisor that died (SIGKILL, OOM, a crash):
// its program may still run, orphaned, and its last checkpoint's dumper may still hold the store.
#include <sys/types.h>

#include <chrono>
#include <vector>

#include "common/result.hpp"
#include "image/store.hpp"
#include "supervisor/run_state.hpp"

namespace ckpt::supervisor {

// Whether the process the previous run recorded as its program still runs: same PID and start
// time (or, while that run was restoring into the PID, started since), not a zombie.
bool program_still_runs(const RunState& previous);

// The store's run lock. With `wait_for_dead_owner`, a lock whose recorded owner (a supervisor)
// is gone is waited for up to `timeout`: a dumper that supervisor forked holds it until it ends.
Result<image::StoreLock> lock_run(const image::Store& store, bool wait_for_dead_owner,
                                  std::chrono::milliseconds timeout);

// Waits until nobody traces `pid` (a dead supervisor's dumper finishing with it).
Status wait_untraced(pid_t pid, std::chrono::milliseconds timeout);

// `pid` and every process below it.
std::vector<pid_t> process_tree(pid_t pid);

// Waits until none of `pids` exists any more (killed orphans are reaped by init, not by us).
Status wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout);

}  // namespace ckpt::supervisor
