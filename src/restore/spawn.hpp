#pragma once
// Creating one puppet with its PID (clone3 set_tid), through the helper processes its session or
// group needs (tree_plan.hpp): a helper takes the missing session's (group's) ID, calls setsid()
// (setpgid()), creates the next helper or the puppet with CLONE_PARENT, so that the puppet is
// the caller's child, and exits. The caller reaps the helpers before it returns: they are gone
// before the restored processes run.
#include <sys/types.h>

#include "common/result.hpp"
#include "resources/tree_plan.hpp"

namespace ckpt {

// clone3 with PID `want`; like fork(), returns 0 in the child.
Result<pid_t> clone_with_pid(pid_t want, uint64_t flags = 0);

// Like fork(), but the child is PID 1 of a new PID namespace. A short-lived helper unshares
// CLONE_NEWPID and creates it with CLONE_PARENT, so that it is still the caller's child while the
// caller's own namespace for children stays as it was: a process in a user namespace of its own
// could not set it back (setns needs privilege over the original), and every later fork of it
// (a sanitizer's tracer at exit, say) would go into the new namespace, dead once its init is.
Result<pid_t> fork_into_new_pid_ns();

struct SpawnOptions {
  bool helpers = true;        // false: the plan's helpers are skipped (a shell job's root)
  bool drop_sigchld = false;  // the helpers' SIGCHLD must not stay pending in the caller
  int close_in_helpers = -1;  // an fd the helpers close at once
};

// Creates the process `pid` whose tree plan is `t`: returns its PID in the caller and 0 in it.
Result<pid_t> spawn_with_helpers(pid_t pid, const tree::TreePlan& t, const SpawnOptions& opts);

}  // namespace ckpt
