#include "dump/pre_copy.hpp"

#include <sys/syscall.h>

#include <algorithm>
#include <optional>

#include "arch/arch.hpp"
#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "dump/freeze.hpp"
#include "proc/maps.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "proc/task.hpp"
#include "resources/signals.hpp"

namespace ckpt::pre_copy {
namespace {

using Clock = std::chrono::steady_clock;

struct Armed {
  pid_t pid = 0;
  std::vector<proc::MapEntry> maps;
  write_tracking::Entry tracking;
  std::chrono::nanoseconds stopped{0};
};

// Calls a stop would leave resuming through the kernel's restart block (restart_syscall), which
// a later dump may not be able to name (arch::restarted_call): a thread in one is not the one
// stopped when another will do.
bool in_restartable_call(pid_t pid, pid_t tid) {
  auto text = proc::read_proc_file(pid, fmt::format("task/{}/syscall", tid));
  if (!text.ok()) return true;
  std::string_view rest = *text;
  auto nr = proc::parse_u64(proc::next_token(rest));
  return nr && (arch::resumes_through_restart_block(static_cast<long>(*nr)) ||
                *nr == SYS_restart_syscall);
}

// The thread to stop for the injection: one not sleeping in a restartable call if there is one.
pid_t thread_to_stop(pid_t pid) {
  auto tids = proc::list_threads(pid);
  if (!tids.ok()) return pid;
  for (pid_t tid : *tids)
    if (!in_restartable_call(pid, tid)) return tid;
  return pid;
}

// Stops one thread of process `armed.pid` for the injected call that makes its userfaultfd and
// lets it go; the others run on. Its maps are read before: what changes meanwhile is only
// tracked less (a range that no longer registers is read at the freeze), never wrongly.
Status arm(Armed& armed, TreeState& state, int cpu) {
  CKPT_TRY_ASSIGN(auto stat, proc::read_stat(armed.pid));
  CKPT_TRY_ASSIGN(armed.maps, proc::read_maps(armed.pid));
  DumpContext ctx;
  ctx.pid = armed.pid;
  ctx.tree = &state;
  ctx.tracer_cpu = cpu;
  ctx.maps = armed.maps;
  pid_t tid = thread_to_stop(armed.pid);
  auto stopped_at = Clock::now();
  CKPT_TRY(freeze_thread(ctx, tid));
  CKPT_TRY_ASSIGN(ctx.syscall_insn, find_syscall_insn(ctx));
  CKPT_TRY(signals::put_back_taken(ctx));
  CKPT_TRY_ASSIGN(ScopedFd uffd, write_tracking::open_in(ctx));
  ctx.threads.clear();
  armed.stopped = Clock::now() - stopped_at;
  armed.tracking = write_tracking::Entry{stat.starttime, std::move(uffd), {}, false};
  return {};
}

}  // namespace

PreCopy PreCopy::take(const std::vector<pid_t>& pids, TracerCrew& crew) {
  auto started = Clock::now();
  std::vector<Armed> armed(pids.size());
  std::vector<std::optional<PreCopied>> pages(pids.size());
  std::vector<size_t> all;
  for (size_t i = 0; i < pids.size(); ++i) {
    armed[i].pid = pids[i];
    all.push_back(i);
  }
  TreeState state;  // holds the vdso find_syscall_insn() keeps; nothing else of it is used
  auto done = crew.share(
      all,
      [&](size_t i) -> Status {
        PhaseClock clock("dump", fmt::format("pid {}: pre-copy", pids[i]));
        CKPT_TRY(arm(armed[i], state, crew.cpu(i % crew.size())));
        clock.mark("armed");
        CKPT_TRY_ASSIGN(
            auto tracked,
            write_tracking::protect_all(armed[i].pid, armed[i].tracking.uffd.get(), armed[i].maps));
        clock.mark("protected");
        CKPT_TRY_ASSIGN(pages[i], PreCopied::copy(armed[i].pid, armed[i].maps, tracked));
        clock.mark("copied");
        return {};
      },
      false);
  PreCopy out;
  for (size_t i = 0; i < pids.size(); ++i) {
    if (!done[i].ok()) {
      log::info("dump", "pid {}: no pre-copy ({})", pids[i], done[i].error().message);
      continue;
    }
    out.longest_stop_ = std::max(out.longest_stop_, armed[i].stopped);
    out.copies_.emplace(pids[i], Copy{std::move(armed[i].tracking), std::move(*pages[i])});
  }
  out.took_ = Clock::now() - started;
  return out;
}

const PreCopied* PreCopy::find(pid_t pid) const {
  auto it = copies_.find(pid);
  return it == copies_.end() ? nullptr : &it->second.pages;
}

void PreCopy::find_unchanged(DumpContext& ctx) const {
  ctx.unchanged.clear();
  auto it = copies_.find(ctx.pid);
  if (it == copies_.end()) return;
  write_tracking::unchanged_since(ctx, it->second.tracking);
  ctx.unchanged = proc::range_intersect(ctx.unchanged, it->second.pages.ranges());
}

uint64_t PreCopy::bytes() const {
  uint64_t n = 0;
  for (auto& [pid, c] : copies_) n += c.pages.bytes();
  return n;
}

}  // namespace ckpt::pre_copy
