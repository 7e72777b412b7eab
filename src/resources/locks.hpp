#pragma once
// File locks: POSIX record locks, BSD flock, OFD locks and leases (docs/engine.md, "File locks").
// Each fd's fdinfo shows the locks taken through its open file by their owner (the open file for
// flock, OFD locks and leases; the process for POSIX locks); /proc/locks shows them all, waiters
// ("->") included. Waiters are not saved: a process blocked on a lock is in an interrupted
// system call, which restarts after restore and waits again.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "image/schema/records.hpp"
#include "proc/misc.hpp"
#include "resources/context.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::locks {

// The record for one lock line of an fdinfo. `read_only` is whether the open file holding it is
// O_RDONLY (a lease being broken to nothing no longer says whether it was a read or a write
// lease). An error says why ckpt cannot take such a lock again (a delegation, a mandatory lock,
// a waiter).
Result<schema::LockRecord> record_of(const proc::FileLock& l, bool read_only);

// "POSIX write lock on bytes 0-99", "flock shared lock", "write lease": for messages.
std::string describe(const schema::LockRecord& r);

// Dump: the locks fdinfo shows on descriptor `p` (open file `open_file`, already described in
// the tree's image, `p.fd` already in ctx.rec.fds), added once each however many descriptors show
// them: POSIX locks to the process, the others to the open file.
Status dump_fd(DumpContext& ctx, const fds::FdProbe& p, uint32_t open_file);

// Dump, once every process is dumped: a deleted file is restored as a copy, so a lock on it
// (held or waited for, by anyone) that a process outside the tree shares through the original
// would not bind the restored processes: refused, naming it.
Status check_deleted_files(const TreeState& tree,
                           const std::function<pid_t(const std::string&)>& outside_holder);

// Restore, in the restorer once it has recreated the open files (`handed` by files::handed_key):
// flock and OFD locks, which belong to the open file whoever takes them.
Status take_open_file_locks(const schema::ImageRoot& image, const HandedFds& handed);
// Restore, injected into the puppet once it holds only the image's descriptors (closing any other
// descriptor of the file would drop a POSIX lock): its POSIX locks, and the leases of the open
// files it is the first to hold (a lease signals the process that took it).
Status take_process_locks(RestoreContext& ctx);

}  // namespace ckpt::locks
