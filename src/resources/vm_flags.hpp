#pragma once
// The VmFlags of a process's mappings for a dump with a snapshot, read before the freeze.
//
// Only /proc/PID/smaps prints VmFlags, and it walks every page table entry for its page counts:
// 16-24 ms of a 1 GiB process's freeze, more than the snapshot's fork. A dump with a snapshot
// therefore reads smaps while the process still runs (read_early), and at the freeze only the
// cheap /proc/PID/maps and the locked size: when every mapping there is one read early (or one
// that grew or shrank since, like a heap) and the locked size agrees, the early VmFlags stand for
// the frozen ones (adopt_early). What a change of flags alone could hide
// (madvise on a whole mapping changes no line of maps) is what decides where pages come from:
// fork() leaves MADV_DONTFORK areas out of the snapshot and gives MADV_WIPEONFORK ones empty.
// The snapshot keeps every flag fork() copies as it was at the freeze, so check_at_fork() reads
// its smaps once the process runs again and fails the dump, with kFlagsMoved, where they differ;
// the caller then dumps again with the flags read while stopped.
#include <sys/types.h>

#include <cerrno>
#include <optional>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "proc/maps.hpp"

namespace ckpt::vm_flags {

// Faster, where ckpt may load BPF programs (root): read_fast() gives the mappings of /proc/PID/maps
// with the kernel's vm_flags read by a BPF iterator (proc/vma_iter.hpp), in a fraction of a
// millisecond at any size, so that a stopped process's flags are simply read at the freeze and
// nothing above is needed. The kernel's bits are translated to smaps codes by a table that is
// first checked against smaps on probe mappings of ckpt's own (each flag ckpt restores made on
// one); a bit the check did not cover sends that process to smaps.

// The mappings of `pid` with their VmFlags, read without walking its page tables; nothing when
// smaps must be read instead: no fast reader (not root, no BTF, CKPT_VM_FLAGS=smaps, a table
// smaps disagreed with), a mapping with a bit the check did not cover, or mappings that changed
// between the two reads (a process that runs).
Result<std::optional<std::vector<proc::MapEntry>>> read_fast(pid_t pid);
// Makes the fast reader now, if it is to be had: 12-18 ms here, once per process. Called before
// a dumper process is forked, so that every dump of a process that dumps often (a supervisor)
// has it from the first.
void prepare_fast();

// The errno of check_at_fork()'s failure: the dump is to be taken again, flags read stopped.
inline constexpr int kFlagsMoved = ESTALE;
inline constexpr std::string_view kFlagsMovedText = "between the early read of its flags";

// smaps of a process that runs: what adopt_early() later compares with.
Result<std::vector<proc::MapEntry>> read_early(pid_t pid);

// In the frozen process: its mappings as maps shows them now, with the flags of the early entry
// each one is (or grew or shrank from), when there is one for every mapping, the locked size
// agrees and no mapping has a userfaultfd of the program (whose registration maps does not
// show); nothing when the flags must be read now.
Result<std::optional<std::vector<proc::MapEntry>>> adopt_early(pid_t pid,
                                                               std::vector<proc::MapEntry> early);

// After the process went on: the snapshot `snap`, forked at the freeze, has the mappings of
// `adopted` but the MADV_DONTFORK ones, with the same flags (but those fork() clears). An error
// with kFlagsMoved names the first mapping that differs.
Status check_at_fork(pid_t pid, const std::vector<proc::MapEntry>& adopted, pid_t snap);
// The same for a process that gets no snapshot after all (its pages copied while it is stopped):
// its own smaps, read now, must have the flags adopted.
Status check_now(pid_t pid, const std::vector<proc::MapEntry>& adopted);
// The same once a process that got no snapshot runs again: its mappings may have changed since,
// and only those still as adopted can be judged; they must have the flags adopted. A flag
// changed between the early read and the freeze on a mapping the program then changed or
// unmapped at once is not seen: the price of not walking its page tables while it is stopped.
Status check_kept(pid_t pid, const std::vector<proc::MapEntry>& adopted);

}  // namespace ckpt::vm_flags
