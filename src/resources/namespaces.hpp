#pragma once
// The namespaces a dumped process lives in besides its PID and mount namespaces (which the
// dump and restore handle: docs/engine.md, "In a new PID namespace"). A restore makes every
// process in the restorer's own UTS, network, time, IPC and cgroup namespaces; a process that
// was in others would come back seeing another hostname, other interfaces and sockets' ports,
// other clocks, other System V objects and queues, other cgroup paths. The dump refuses it,
// naming the namespace, until ckpt can make such namespaces again. User namespaces are left
// out: an unprivileged restore puts its processes in one of its own (restore/user_ns.cpp).
#include <sys/types.h>

#include "common/result.hpp"

namespace ckpt::namespaces {

// Fails naming the first of those namespaces in which `pid` is not where ckpt is.
Status check_same_as_ckpt(pid_t pid);

}  // namespace ckpt::namespaces
