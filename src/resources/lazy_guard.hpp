#pragma once
// The guard of a lazy restore. While the page server fills a program's memory, ckpt holds the
// program's userfaultfds; if ckpt died (SIGKILL, a crash), they would close with it and the kernel
// would let the program read zeros where its pages belong. The guard is a small process forked
// from ckpt that holds a copy of each userfaultfd, so that faults wait instead of reading zeros,
// and that kills the restored processes and their descendants when ckpt's end of its socket
// closes before ckpt said "done".
//
// The guard process (common/guard_process.hpp) only runs system calls: no allocation.
#include <sys/types.h>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::lazy_pages {

class Guard {
 public:
  // Forks the guard. Call once every restored process exists: the guard takes a PID.
  static Result<Guard> start();
  Guard(Guard&&) = default;
  Guard& operator=(Guard&&) = default;
  // Ends the guard as if ckpt had died: the watched processes are killed.
  ~Guard();

  // Hands over a copy of `uffd`; `pid` (0 when unknown: a child forked since) is killed if ckpt
  // dies. `id` names it for forget().
  Status watch(uint32_t id, int uffd, pid_t pid);
  // The server closed that userfaultfd (its pages are all in): the guard closes its copy, which
  // would otherwise keep the registration alive with nobody answering.
  void forget(uint32_t id);
  // Every page is in: the guard ends without killing anything.
  void done();

 private:
  Guard() = default;
  ScopedFd sock_;
  ScopedFd pidfd_;  // of the guard, to reap it without waiting on a reused PID
};

}  // namespace ckpt::lazy_pages
