#include "dump/freeze.hpp"

#include <sys/ptrace.h>

#include <algorithm>
#include <mutex>

#include "arch/arch.hpp"
#include "common/checksum.hpp"
#include "common/cpu_pin.hpp"
#include "common/log.hpp"
#include "proc/maps.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "proc/task.hpp"
#include "ptrace/tracee.hpp"
#include "resources/seccomp.hpp"
#include "resources/signals.hpp"

namespace ckpt {
namespace {

bool thread_gone(pid_t pid, pid_t tid) {
  auto st = proc::read_thread_stat(pid, tid);
  return !st.ok() || st->state == 'Z' || st->state == 'X';
}

Status seize_thread(DumpContext& ctx, pid_t tid) {
  auto t = ptrace::Tracee::seize(tid, PTRACE_O_TRACESYSGOOD);
  if (!t.ok()) {
    if (t.error().errnum == ESRCH) return {};  // exited meanwhile
    // The kernel refuses to attach to a thread that is already a zombie, with EPERM.
    if (t.error().errnum == EPERM && tid != ctx.pid && thread_gone(ctx.pid, tid)) return {};
    if (t.error().errnum == EPERM)
      return errorf("dump pid {}: no permission to trace it (run as its owner or root)", ctx.pid);
    return t.error();
  }
  ptrace::StopInfo how;
  if (Status st = t->interrupt(&how); !st.ok()) {
    // A thread that ends while being stopped is not part of the image (its exit has cleared its
    // tid in memory, as for any thread gone before the dump); a main thread ending is not that.
    if (st.error().errnum != ESRCH || tid == ctx.pid) return st;
    t->release();
    return {};
  }
  ctx.threads.push_back(ThreadHandle{tid, std::move(*t), {}, CpuPin::pin(tid, ctx.tracer_cpu)});
  Status held = signals::hold_taken(ctx.threads.back(), ctx.pid, how);
  if (!held.ok() && held.error().errnum == ESRCH && tid != ctx.pid) {
    ctx.threads.pop_back();
    return {};
  }
  return held;
}

}  // namespace

// Stops every thread. Threads may be created while we stop the others, so repeat until the list
// of tasks holds no thread we have not stopped.
Status freeze(DumpContext& ctx) {
  for (;;) {
    CKPT_TRY_ASSIGN(auto tids, proc::list_threads(ctx.pid));
    bool added = false;
    for (pid_t tid : tids) {
      bool known = std::any_of(ctx.threads.begin(), ctx.threads.end(),
                               [&](const ThreadHandle& h) { return h.tid == tid; });
      if (known) continue;
      CKPT_TRY(seize_thread(ctx, tid));
      added = true;
    }
    if (!added) break;
  }
  auto main = std::find_if(ctx.threads.begin(), ctx.threads.end(),
                           [&](const ThreadHandle& h) { return h.tid == ctx.pid; });
  if (main == ctx.threads.end())
    return errorf("dump pid {}: its main thread has exited (not supported yet)", ctx.pid);
  std::iter_swap(ctx.threads.begin(), main);
  return seccomp::suspend_for_dump(ctx);
}

Status freeze_thread(DumpContext& ctx, pid_t tid) {
  CKPT_TRY(seize_thread(ctx, tid));
  if (ctx.threads.empty()) return errorf("dump pid {}: thread {} is gone", ctx.pid, tid);
  return seccomp::suspend_for_dump(ctx);
}

// Injected calls go through a `syscall` instruction of the process's own vdso: nothing needs to
// be written into its code. The vdso itself goes into the image once (every process of a dump
// has the same), for restore to compare with its own.
Result<uint64_t> find_syscall_insn(DumpContext& ctx) {
  for (auto& m : ctx.maps) {
    if (m.kind != proc::MapKind::vdso) continue;
    schema::Bytes text(m.size());
    CKPT_TRY(read_remote(ctx.pid, m.start, text.data(), text.size()));
    std::lock_guard lk(ctx.tree->mu);
    auto& vdso = ctx.tree->image.vdso;
    if (vdso.image.empty()) {
      vdso.hash = checksum64(std::as_bytes(std::span(text)));
      vdso.image = text;
    }
    auto at = std::search(text.begin(), text.end(), std::begin(arch::kSyscallInsn),
                          std::end(arch::kSyscallInsn));
    if (at != text.end()) return m.start + static_cast<uint64_t>(at - text.begin());
  }
  return errorf("dump pid {}: no syscall instruction found in its vdso", ctx.pid);
}

}  // namespace ckpt
