#pragma once
// The guard of a dump's TCP connections: a process that outlives the dumper.
//
// A connection being saved is locked (netlock.hpp) and its socket is in repair mode, which the
// kernel keeps until told otherwise. Should the dumper die (SIGKILL, a crash) before it undoes
// both, the program, let go by the kernel as its tracer vanishes, would keep connections that
// never send again and whose peer's packets are dropped. So before the first connection is locked
// the dumper forks a guard, and hands it a copy of each socket with its connection before locking
// it. The guard waits on a socket pair: on the dumper's word it goes without touching anything; if
// the pair reads end of file first (the dumper is gone), it turns repair mode off and unlocks each
// connection, as the dump's own end would have.
#include <sys/types.h>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "resources/fds/netlock.hpp"

namespace ckpt::fds {

class TcpGuard {
 public:
  TcpGuard() = default;
  TcpGuard(const TcpGuard&) = delete;
  TcpGuard& operator=(const TcpGuard&) = delete;
  ~TcpGuard() { stand_down(); }

  // Gives the guard `sock` (a copy) and its connection, starting the guard on first use.
  Status watch(int sock, const netlock::Connection& c);
  // The dumper has decided what becomes of the connections (undone, or kept locked for a
  // restore): the guard goes without touching them. Waits for it.
  void stand_down();

 private:
  Status start();
  pid_t pid_ = -1;
  ScopedFd channel_;
};

}  // namespace ckpt::fds
