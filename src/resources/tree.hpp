#pragma once
// The process tree: which process is whose child, and the process groups and sessions they are
// in. Restore rebuilds the tree by letting each puppet create its children (clone3 with their
// PIDs) in the order of the image, after joining its own group and session, so that a group's
// leader always exists before its members join it.
#include <vector>

#include "proc/status.hpp"
#include "resources/context.hpp"
#include "resources/tree_plan.hpp"

namespace ckpt::tree {

// Checks a child found while freezing the tree: not traced by another, not sharing its parent's
// memory (vfork) or file table (CLONE_FILES). A zombie (ended, not yet waited for) is fine: it
// comes back as a zombie.
enum class ChildState { live, zombie };
Result<ChildState> check_child(pid_t parent, pid_t child);
// Checks the dumped tree's root: it shares no file table with its parent, which is not dumped.
Status check_root(pid_t root);
// Refuses a process that lives in a PID namespace below the dumper's: its PIDs inside it are not
// the ones the image would record. `status` is the process's.
Status check_pid_namespace(pid_t pid, const proc::ProcStatus& status);

// The image of a zombie: its PID and the status its parent's wait will get.
Result<schema::ZombieRecord> dump_zombie(pid_t pid);

// Records in each process's image its parent, group and session and how the restored process
// gets them back (tree_plan.hpp). `procs` is in creation order (root first, each parent before
// its children); groups and sessions that cannot be rebuilt are refused, naming them.
Status dump(const std::vector<DumpContext*>& procs);
// The same in two steps: the IDs, read while the processes are stopped, then the plan, which
// scans every other process of the system for IDs it holds and so is left for after the
// processes are let go (a leave-running dump keeps them stopped for as short as it can).
Status dump_ids(const std::vector<DumpContext*>& procs);
Status dump_plan(const std::vector<DumpContext*>& procs);

// The PIDs of the processes of an image, in creation order, with the index of each parent
// (-1 for the root).
struct Shape {
  std::vector<pid_t> pids;
  std::vector<int> parent;
};
Result<Shape> shape(const std::vector<schema::ProcessRecord>& procs);

// In a zombie's puppet: ends the way the dumped process had ended.
[[noreturn]] void end_as_zombie(const schema::ZombieRecord& zombie);

// In a puppet whose children include zombies: waits until they have ended, and drops the
// SIGCHLD their end sent (the dumped parent had had it already).
Status settle_zombies(const std::vector<pid_t>& zombies);

// In a new puppet before it creates its own children: its session and group. The root, unless
// it is a shell job (which joins the caller's), leads a session or group again if it led one.
Status join_in_puppet(const TreePlan& plan, bool root, bool shell_job);
// The same from the image's plan fields alone.
Status join_in_puppet(const schema::ProcessRecord& proc, bool root, bool shell_job);

// In a puppet, once every puppet of the tree exists: joins a group whose leader was created
// after it (GroupStep::late).
Status join_late_in_puppet(const TreePlan& plan, bool root, bool shell_job);

// How the restore rebuilds each process's session and group (tree_plan.hpp), planned from the
// image's IDs and what runs now; in the image's order.
Result<std::vector<TreePlan>> restore_plans(const std::vector<schema::ProcessRecord>& procs);

}  // namespace ckpt::tree
