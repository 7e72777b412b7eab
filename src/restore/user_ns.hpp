#pragma once
// Restoring without privileges (issue 11, point 13). Making a process with a chosen PID
// (clone3 set_tid) needs CAP_CHECKPOINT_RESTORE over the PID namespace's owner, which an
// ordinary user has only in a user namespace of their own. So an unprivileged restore first
// enters a new user namespace in which only the user's own uid and gid are mapped (to
// themselves), then restores into a new PID namespace owned by it (pid_ns.hpp). Capabilities
// there reach only what the user owns: a process of the image that ran as another user, or
// with supplementary groups other than the user's own gid, cannot be given those ids (its
// restore fails naming them), and nothing gains a privilege on the host.
#include "common/result.hpp"

namespace ckpt::user_ns {

// True when this process cannot create processes with chosen PIDs here (no
// CAP_CHECKPOINT_RESTORE and no CAP_SYS_ADMIN).
bool restore_needs_own_namespace();

// unshare(CLONE_NEWUSER) with this process's uid and gid mapped to themselves and setgroups
// denied (what an unprivileged process may write). Must be called while single-threaded.
Status enter_own();

}  // namespace ckpt::user_ns
