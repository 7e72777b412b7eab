#pragma once
// The namespaces a dumped process lives in besides its PID and mount namespaces (which the
// dump and restore handle: docs/engine.md, "In a new PID namespace").
//
// UTS: a tree in a UTS namespace of its own (unshare -u, a container's hostname) comes back in
// a new one with the same hostname and domain name, made by the root's puppet before it creates
// the others; every process of the tree must be in that one namespace.
//
// Time: the same for a time namespace of its own (unshare -T), made with the same offsets of the
// monotonic and boot-time clocks, so that they go on from where they were for the program (less
// the time it was not running: it sees that time pass, as it would without a namespace). A
// process that made one for its children without entering it is refused.
//
// A restore makes every process in the restorer's own network, IPC and cgroup namespaces; a
// process that was in others would come back seeing other interfaces and sockets' ports, other
// System V objects and queues, other cgroup paths. The dump refuses it,
// naming the namespace, until ckpt can make such namespaces again. User namespaces are left
// out: an unprivileged restore puts its processes in one of its own (restore/user_ns.cpp).
#include <sys/types.h>

#include <vector>

#include "common/result.hpp"
#include "image/schema/records.hpp"

namespace ckpt {
struct DumpContext;
}

namespace ckpt::namespaces {

// Fails naming the first of the network, IPC and cgroup namespaces in which `pid` is not where
// ckpt is.
Status check_same_as_ckpt(pid_t pid);

// The tree's UTS and time namespaces into the image (procs[0] is the root): nothing for one that
// is ckpt's; refused when the processes are not all in the root's.
Status dump(const std::vector<DumpContext*>& procs);

// In the root's puppet, before it creates any other: a new UTS namespace with the image's names.
Status make_uts(const schema::UtsRecord& uts);
// There too: a new time namespace with the image's offsets, which the puppet enters.
Status make_time(const schema::TimeNsRecord& time);

}  // namespace ckpt::namespaces
