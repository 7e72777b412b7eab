#pragma once
// Write tracking for incremental dumps: which pages of a process were written since the previous
// generation, known without reading them (docs/engine.md, "Write tracking").
//
// At a dump, while the process is stopped, ckpt makes a userfaultfd inside it (an injected call;
// ckpt takes the file with pidfd_getfd and closes the process's fd at once), registers its private
// mappings for asynchronous write-protection (proc/page_scan.hpp) and protects every page. The
// first write to a page afterwards is resolved by the kernel, which only clears the page's
// protection: nothing reaches ckpt and the program is not stopped. At the next dump, still while
// stopped, the pages that are present, protected and not the zero page are exactly those not
// written since: their content is the parent generation's, and the dump takes their index
// entries from the parent instead of reading and hashing them. Then every page is protected again.
//
// The userfaultfd must outlive the dump (closing it ends the registration), so whoever dumps the
// same program again and again keeps a Tracker: `ckpt run` does. A page is trusted as unchanged
// only when the protection was renewed at the very dump that made the parent generation; anything
// else (a failed dump in between, a restore, an exec, a new mapping, a page not in the parent)
// makes the page read and hashed as without tracking.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "proc/page_scan.hpp"

namespace ckpt {
struct DumpContext;
}

namespace ckpt::write_tracking {

// One tracked process.
struct Entry {
  uint64_t start_time = 0;  // /proc/PID/stat: another process under the same pid is not this one
  ScopedFd uffd;
  // The generation whose snapshot the protection was last renewed with; empty when none is (the
  // last renewal belonged to a dump that failed).
  std::string base;
  bool renewed = false;  // in the dumper: renewed by this dump
};

// Kept by the caller between dumps (DumpOptions::tracker). The dump runs in a child process
// (dump_process): it works on its own copy and sends it back with its answer (adopt()).
class Tracker {
 public:
  std::map<pid_t, Entry>& entries() { return entries_; }
  const std::map<pid_t, Entry>& entries() const { return entries_; }
  // Ends the tracking of every process (their registrations go with the userfaultfds).
  void clear() { entries_.clear(); }

  // The dumper's report: one message per process tracked after the dump, with its userfaultfd.
  static std::string encode(pid_t pid, const Entry& e);
  // Takes an entry reported by the dumper (`message` from encode, `uffd` received with it).
  // `generation` is the one the dump made, empty if it failed.
  void receive(std::string_view message, ScopedFd uffd, const std::string& generation);
  // Starts a new round of receive(): entries not received again are dropped by finish_round().
  void begin_round() { received_.clear(); }
  void finish_round();

 private:
  std::map<pid_t, Entry> entries_;
  std::map<pid_t, bool> received_;
};

// In the dumper, while ctx's process is stopped and after memory::prepare(): renews the write
// protection of ctx's process (making its userfaultfd the first time) and, when the tracker's
// protection of it was renewed at generation `parent`, fills ctx.unchanged with the pages not
// written since. Nothing here can make a dump wrong: a failure is logged and leaves the process
// untracked (its pages read and hashed), never stopped longer than the calls take.
void renew(DumpContext& ctx, Tracker& tracker, const std::string& parent);

// A userfaultfd of ctx's process (stopped, ctx.syscall_insn found): made by an injected call,
// taken by ckpt and closed in the process again, with asynchronous write-protection asked for.
Result<ScopedFd> open_in(DumpContext& ctx);
// Registers the private mappings of `maps` with `uffd` (process `pid`'s) and write-protects
// their pages; needs no stop. Returns the ranges tracked: a mapping gone meanwhile, or one a
// userfaultfd of the program's own has, is not.
Result<proc::RangeSet> protect_all(pid_t pid, int uffd, const std::vector<proc::MapEntry>& maps);

// While ctx's process is stopped, after its maps are read: fills ctx.unchanged with the pages
// not written since `e` was last renewed, renewing nothing (the freeze of a pre-copy dump, which
// nothing follows). Empty when `e` no longer tracks the process: another process under its PID,
// an exec since.
void unchanged_since(DumpContext& ctx, const Entry& e);

// Whether ctx's process is one the tracker follows (its `uw` VmFlags are then ckpt's own).
bool follows(const Tracker* tracker, pid_t pid);

}  // namespace ckpt::write_tracking
