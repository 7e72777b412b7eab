#pragma once
// Dumping a tree whose root is the init of a PID namespace just below ours (`unshare --pid
// --fork prog`, a container's init): its PIDs inside are what the image must hold, and only a
// process in that namespace sees them (in /proc, to ptrace, in the kernel's answers). So the
// dumper is forked into the namespace (setns(CLONE_NEWPID) for our next child) and mounts that
// namespace's /proc in a mount namespace of its own; there it dumps PID 1. One thing it cannot
// do from inside: kill the tree, since an init ignores SIGKILL sent from its own namespace. The
// caller, outside, does that when the dumper asks (after the image is committed).
//
// The same way dumps a copy made by `ckpt restore --pid-ns` (a tree below ckpt's own init in its
// namespace) by its PID outside: the image holds the PIDs of the namespace, and a restore with
// --pid-ns makes another copy from it.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "dump/dump.hpp"

namespace ckpt::ns_init {

class Entry {
 public:
  // The namespace of `pid` when it is the init of one just below ours, or a process in one whose
  // init is ckpt's (a copy that `restore --pid-ns` made; the dump leaves that init out, as the
  // restore makes a new one); nullopt otherwise.
  static Result<std::optional<Entry>> of(pid_t pid);

  // This thread's next child is created in the namespace; leave() puts that back.
  Status enter_for_children();
  void leave();

  // In the dumper (created in the namespace): its own /proc of it, and `opts` aimed at PID 1 with
  // the kill left to the caller through `channel` (see ask_caller_to_kill).
  Status settle_inside(DumpOptions& opts, int channel);

  // In the caller: SIGKILL to the init from outside (every process of the namespace dies with
  // it, the dumper too, which the caller must reap before the init can end), then the wait
  // until the init is dead.
  Status kill();
  Status wait_dead();
  pid_t pid() const { return pid_; }
  // For messages: which process the dumper's "pid N" was.
  std::string describe() const;

 private:
  pid_t pid_ = 0;    // the target, as we see it
  pid_t inner_ = 1;  // the target in its namespace
  ScopedFd pidfd_;   // opened before the dump: the kill cannot hit a process that took its PID
  ScopedFd ns_;      // its PID namespace
  ScopedFd own_ns_;  // ours, to go back to
};

// In a dumper inside the namespace, once the tree is stopped: the namespace's last given PID as
// it was before this dumper was made (which took the next one); nullopt if unreadable.
std::optional<int32_t> last_pid_before_us();

// The dumper's half of the kill: "kill ID FROZEN_NS TOTAL_NS" on `channel`, then waits for the
// caller to kill it (this process dies with the namespace). Returns only when the caller could
// not, with why.
Status ask_caller_to_kill(int channel, const DumpResult& saved);

}  // namespace ckpt::ns_init
