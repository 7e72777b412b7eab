#pragma once
// How the restore rebuilds each process's session and process group. A process can only get a
// session by inheriting it or by leading a new one, and a group by inheriting it, leading it or
// joining one that exists in its session. What the original tree got in other ways (a daemon
// that double-forked lives in the session of a process that is gone; a group outlives its
// leader; a process joins the group of one forked after it; a parent calls setsid() after
// forking) is rebuilt as CRIU does:
//   - a helper: a process created with the missing session's (group's) ID that calls setsid()
//     (setpgid()), creates the process as its own parent's child (CLONE_PARENT) and exits;
//   - late: the process joins its group once every process of the tree exists;
//   - early: a parent creates the child before its own setsid().
// plan_tree() simulates the restore in the order it creates processes, so that each plan is
// checked against what will exist at that moment; what cannot be rebuilt is refused by name.
#include <sys/types.h>

#include <functional>
#include <vector>

#include "common/result.hpp"

namespace ckpt::tree {

// How a restored process gets its session and group, relative to what its parent puppet has.
// helper: a process with the session's (group's) ID makes it and creates this one; late: joins
// its group once every process exists.
enum class SessionStep { inherit, lead, helper };
enum class GroupStep { inherit, lead, join, helper, late };

struct TreePlan {
  pid_t pgid = 0, sid = 0;  // the original IDs (those of the helpers)
  SessionStep session = SessionStep::inherit;
  GroupStep group = GroupStep::inherit;
  pid_t leader = 0;    // the group to join (join, late)
  bool early = false;  // created by its parent before the parent's setsid()
};

struct TreeIds {
  pid_t pid = 0, ppid = 0, pgid = 0, sid = 0;
  bool zombie = false;
};

// `procs`: root first, each parent before its children, children in the order their parent
// creates them. `alive_outside(id)`: a live process outside the tree has PID `id` (its session
// or group can then only be inherited from the restorer, by the root).
Result<std::vector<TreePlan>> plan_tree(const std::vector<TreeIds>& procs,
                                        const std::function<bool(pid_t)>& alive_outside);

}  // namespace ckpt::tree
