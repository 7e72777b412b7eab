#pragma once
// Waiting for the processes ckpt makes (helpers, stand-ins, snapshots) to end.
#include <sys/types.h>

namespace ckpt {

// Waits until `pid` (a child of ours, or a process we trace) has ended, through EINTR and any
// ptrace stops it reports on the way; returns its wait status, or -1 when it is not ours to wait
// for (already reaped).
int wait_end(pid_t pid);

// SIGKILLs `pid` and waits until it has ended: a helper of ours leaves no zombie behind.
void kill_and_wait(pid_t pid);

}  // namespace ckpt
