#pragma once
// PID namespaces as ckpt meets them: how deep a process is nested, whether it is the init of a
// namespace just below ours, and a /proc that shows the namespace a process lives in.
#include <sys/types.h>

#include <cstddef>

#include "common/result.hpp"
#include "proc/status.hpp"

namespace ckpt::proc {

// How many PID namespaces a process is in (1 on the host): the length of its NStgid line.
size_t pid_ns_depth(const ProcStatus& status);
// This process's depth, read anew (a process that entered a namespace has another).
Result<size_t> own_pid_ns_depth();

// True when `status` is a process that is PID 1 of a namespace one level below ours.
bool is_child_ns_init(const ProcStatus& status, size_t own_depth);

// In a new mount namespace (its mounts private, so nothing leaks back to the caller's), a /proc
// of the PID namespace this process is in. Single-threaded processes only (unshare(CLONE_NEWNS)).
Status mount_own_proc();

// Whether /proc here shows this process's own PID namespace (/proc/self names our PID).
bool proc_shows_own_ns();

}  // namespace ckpt::proc
