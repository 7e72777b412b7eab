#pragma once
// `ckpt run` without privileges (issue 11, point 13): recovering the program from a checkpoint
// makes it again with its PID, which needs CAP_CHECKPOINT_RESTORE over the PID namespace it lives
// in. So the whole run moves into a user namespace of the user's own (restore/user_ns.hpp) and a
// new PID namespace owned by it, whose init is the supervisor: the program is its child there,
// and checkpoints and restores work as they do for root. The command's own process stays outside
// only to wait: it passes on the signals sent to it and exits with the supervisor's code. The
// price: the supervisor's end (even SIGKILL) ends the program with the namespace, so `--resume`
// recovers from the store rather than taking a running program over.
#include <sys/types.h>

#include <functional>

namespace ckpt::supervisor {

// Runs `body` as PID 1 of a new PID namespace in a new user namespace, in a mount namespace of
// its own with that namespace's /proc; `body` gets its own PID as the caller sees it. Returns
// body's return value (128 + signal if it was killed), or 1 with a message printed when the
// namespaces cannot be made. Call while single-threaded.
int run_in_own_namespaces(const std::function<int(pid_t outer_pid)>& body);

// In such a run: a process's PID as the caller of `ckpt run` sees it (what run.json holds, for
// `ckpt status` and for users who signal the program); outside one, `pid` itself.
pid_t pid_outside(pid_t pid);
bool in_own_namespaces();

}  // namespace ckpt::supervisor
