#pragma once
// A copy-on-write snapshot of a stopped process: a fork made inside it, holding a frozen copy of
// its private memory, so that the process can run on while that memory is copied into the image.
//
// The fork must stay invisible to the program. An injected clone() without exit signal makes an
// intermediate child (traced from birth through PTRACE_O_TRACECLONE, so no code of the program
// runs in it) that closes its copies of the descriptors and forks the snapshot process; the
// intermediate is killed and reaped by an injected wait4() in the process while it is still
// stopped. The snapshot process, orphaned, goes to the system's reaper: the program never sees a
// child, a SIGCHLD, a new descriptor or an interrupted call. The snapshot process stays in a
// ptrace stop with every signal blocked and is killed with the dumper (PTRACE_O_EXITKILL).
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.hpp"
#include "resources/context.hpp"

namespace ckpt::snapshot {

// Owns the snapshot process: killed (and its tracing end reaped) on destruction.
class Snapshot {
 public:
  Snapshot() = default;
  explicit Snapshot(pid_t pid) : pid_(pid) {}
  Snapshot(Snapshot&& o) noexcept : pid_(o.pid_) { o.pid_ = 0; }
  Snapshot& operator=(Snapshot&& o) noexcept;
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  ~Snapshot() { end(); }

  pid_t pid() const { return pid_; }
  explicit operator bool() const { return pid_ != 0; }
  // Kills it and waits for its end.
  void end();
  // Kills it without waiting: the kernel tears down its memory (about 20 ms per GiB here) while
  // the dump goes on; end() waits for it.
  void kill_now();

 private:
  pid_t pid_ = 0;
};

// Takes the snapshot of ctx's process, which must be stopped with its state read (registers,
// threads, memory plan). Fails, leaving the process as it was, when it cannot be done: no fork
// allowed (RLIMIT_NPROC, pids cgroup, memory), no self-restoring injection, an unusual stack.
Result<Snapshot> take(DumpContext& ctx);

}  // namespace ckpt::snapshot
