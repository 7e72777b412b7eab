#pragma once
// The end of a dump without --leave-running: the dumped processes killed, and known dead before
// the dump reports success.
#include <sys/types.h>

#include <chrono>
#include <vector>

#include "common/result.hpp"

namespace ckpt {

struct KillTarget {
  pid_t pid = 0;
  std::vector<pid_t> traced;  // its threads that this process traces
};

// SIGKILLs each process (through a pidfd, from the caller's PID namespace: the init of a
// namespace ignores a SIGKILL sent from inside it) and waits up to `timeout` until every one
// is dead, reaping the traced threads (only their tracer can). Errors name what still lives.
Status kill_and_wait(const std::vector<KillTarget>& targets,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace ckpt
