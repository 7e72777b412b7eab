#pragma once
// Pre-copy (DumpOptions::pre_copy, `ckpt dump --leave-running --pre-copy`): the private memory of
// each process is copied while it still runs, and the freeze reads only what was written since.
//
// Before the freeze, one thread of each process is stopped alone, only for the injected call that
// makes its userfaultfd (write_tracking::open_in; the fd is closed in the process again at once,
// though its siblings, running meanwhile, could see its number taken for that long). A thread
// sleeping in a call the kernel would resume through its restart block is not the one stopped
// when another will do: a later dump must name that call, which only its code can tell
// (arch::restarted_call). Once it runs again, ckpt registers its private mappings
// for asynchronous write-protection, protects every page and copies the pages with data of
// their own into its memory (PreCopied). At the freeze, PAGEMAP_SCAN tells which copied pages
// are still protected, so not written since they were copied: those are taken from the copy,
// and the others are read while the process is stopped (memory::hold_changed). No fork is
// needed for a consistent copy, so the freeze no longer grows with the page tables. When too
// much was written meanwhile, the process gets a snapshot as without pre-copy. The userfaultfds
// go at the end of the dump, and their registrations with them.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <vector>

#include "common/tracer_crew.hpp"
#include "resources/context.hpp"
#include "resources/pre_copied.hpp"
#include "resources/write_tracking.hpp"

namespace ckpt::pre_copy {

class PreCopy {
 public:
  // Arms and copies each process of `pids` (on the crew's members at once). A process it cannot
  // arm or copy is left to the dump's usual ways; the log says why.
  static PreCopy take(const std::vector<pid_t>& pids, TracerCrew& crew);

  // What was copied of process `pid`, or null.
  const PreCopied* find(pid_t pid) const;
  // While ctx's process is frozen, after its memory plan: ctx.unchanged gets the pages copied
  // and not written since.
  void find_unchanged(DumpContext& ctx) const;

  uint64_t bytes() const;
  size_t processes() const { return copies_.size(); }
  // The longest any process was stopped to be armed.
  std::chrono::nanoseconds longest_stop() const { return longest_stop_; }
  std::chrono::nanoseconds took() const { return took_; }

 private:
  struct Copy {
    write_tracking::Entry tracking;
    PreCopied pages;
  };
  std::map<pid_t, Copy> copies_;
  std::chrono::nanoseconds longest_stop_{0}, took_{0};
};

}  // namespace ckpt::pre_copy
