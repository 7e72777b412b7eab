#pragma once
// `ckpt restore --pid-ns`: the tree comes back inside a new PID namespace, with the PIDs it had
// there, so that it can be restored while those PIDs are taken on the host (the original still
// runs, or another copy does). The namespace's init is a process of ckpt, which does the restore
// from inside (in a mount namespace of its own whose /proc shows the new PID namespace, so that
// the restore and the restored program see their own PIDs in /proc) and then stays as the
// namespace's init: it reaps orphans, passes SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1 and
// SIGUSR2 sent to it by a process on to the root, and ends once no process is left in the
// namespace, with the root's exit code. A lazy restore's memory is served by the init too,
// before it takes up that role.
#include <sys/types.h>

#include <functional>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "image/store.hpp"
#include "resources/lazy_pages.hpp"
#include "restore/puppet.hpp"
#include "restore/restore.hpp"

namespace ckpt::pid_ns {

struct Restored {
  RestoreResult result;  // result.pid: the root as the caller sees it (its PID outside)
  pid_t inner_pid = 0;   // the root's PID inside the namespace: the image's
  pid_t init = 0;        // the namespace's init, a child of the caller
  ScopedFd lazy_report;  // a lazy restore: where the init says when the memory is in
};

Result<Restored> restore(const image::Store& store, const RestoreOptions& opts);

// A lazy restore in a namespace: its init serves the memory. Waits until it is all in; the
// init's figures, or the error that made it kill the processes.
Result<lazy_pages::Stats> wait_lazy(Restored& r);

// An image whose root was PID 1 of its own PID namespace (dumped with `ckpt dump` of that
// namespace's init) comes back the same way: the root's puppet is made PID 1 of a new namespace
// (it mounts that namespace's /proc in a mount namespace of its own, which the tree inherits),
// and the rest of the restore, `build` given the puppets, runs in a process created inside the
// namespace, where the image's PIDs are the PIDs; it ends as soon as it is done. Returns what
// `build` returned, with `pid` the root's PID here and `ns_pid` 1. On failure the root is
// killed, which ends every process of the namespace.
using BuildPuppets = std::function<Result<RestoreResult>(PuppetTree)>;
Result<RestoreResult> restore_as_init(const PuppetPlan& plan, const BuildPuppets& build);

}  // namespace ckpt::pid_ns
