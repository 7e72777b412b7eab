#include "dump/snapshot.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>

#include "common/child_process.hpp"
#include "common/fault_point.hpp"
#include "common/log.hpp"
#include "common/phase_clock.hpp"

namespace ckpt::snapshot {
namespace {

// Below the stack pointer the injection writes its rt_sigreturn frame and scratch (a few KiB).
constexpr uint64_t kStackKept = 128 << 10;
// Zeros in the scratch, where the new processes' stack pointer goes: if one were ever let run
// (its tracer gone before PTRACE_O_EXITKILL is set), the `ret` after its `syscall` jumps to 0 and
// the fault ends it, with every signal blocked, instead of running the program's code twice.
constexpr size_t kLanding = 64;

// Memory that the injection itself changes in the process and so in its forks: the frame and
// scratch below the stack pointer, and the rseq area the kernel updates when a task returns to
// user space. Read before and put back into the snapshot, which must hold what the program had.
struct Pristine {
  uint64_t addr = 0;
  std::vector<char> bytes;
};

Result<std::vector<Pristine>> read_pristine(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(ptrace::Regs regs, ctx.threads[0].tracee.regs());
  uint64_t sp = arch::sp(regs);
  auto stack = std::find_if(ctx.maps.begin(), ctx.maps.end(),
                            [&](const proc::MapEntry& m) { return m.start < sp && sp <= m.end; });
  if (stack == ctx.maps.end())
    return errorf("pid {}: its stack pointer {:#x} is in no mapping", ctx.pid, sp);
  uint64_t low = std::max(stack->start, sp > kStackKept ? sp - kStackKept : 0);
  std::vector<Pristine> out;
  out.push_back({low, std::vector<char>(sp - low)});
  for (auto& t : ctx.rec.threads)
    if (t.tid == ctx.pid && t.rseq.abi_pointer != 0)
      out.push_back({t.rseq.abi_pointer, std::vector<char>(t.rseq.abi_size)});
  for (auto& p : out) CKPT_TRY(read_remote(ctx.pid, p.addr, p.bytes.data(), p.bytes.size()));
  return out;
}

// Writes into the snapshot only the pages of `p` that the injection changed: writing the others
// would populate pages the program never touched (zeros then saved in the image).
Status put_back(pid_t snap, const Pristine& p) {
  std::vector<char> now(p.bytes.size());
  CKPT_TRY(read_remote(snap, p.addr, now.data(), now.size()));
  constexpr uint64_t kPage = 4096;
  for (uint64_t at = p.addr; at < p.addr + p.bytes.size();) {
    uint64_t end = std::min((at & ~(kPage - 1)) + kPage, p.addr + p.bytes.size());
    size_t off = at - p.addr, len = end - at;
    if (std::memcmp(now.data() + off, p.bytes.data() + off, len) != 0)
      CKPT_TRY(write_remote(snap, at, p.bytes.data() + off, len));
    at = end;
  }
  return {};
}

// Takes the end of a process we trace (not our child) as its tracer, after killing it.
// Waits for the first stop of a process the kernel attached to us at its birth.
Status wait_first_stop(pid_t pid) {
  ptrace::Tracee t = ptrace::Tracee::adopt(pid);
  auto stop = t.wait_stop();
  t.release();  // never detach: that would let it run
  if (!stop.ok()) return stop.error();
  if (stop->exited()) return errorf("pid {} ended at its birth (status {:#x})", pid, stop->status);
  return {};
}

// In the intermediate child `mid`, just born in its first stop: closes its descriptors and forks
// the snapshot process. Whatever happens, `mid` is dead and taken by its tracer on return, for
// its parent to reap.
Result<Snapshot> fork_in_mid(pid_t mid, unsigned long options, uint64_t landing) {
  ptrace::Tracee t = ptrace::Tracee::adopt(mid, options);
  t.set_clones_processes_only(true);  // it makes only the snapshot: its waits need not poll
  struct Killer {
    ptrace::Tracee& t;
    ~Killer() {
      kill_and_wait(t.tid());
      t.release();
    }
  } killer{t};
  PhaseClock clock(mid);
  CKPT_TRY(wait_first_stop(mid));
  clock.mark("snapshot: intermediate's first stop");
  fault::point("snapshot", "intermediate child stopped");
  CKPT_TRY(t.set_options(options | PTRACE_O_EXITKILL));
  CKPT_TRY_ASSIGN(ptrace::Regs regs, t.regs());
  // It stands just after the `syscall` instruction its parent made the clone through.
  CKPT_TRY_ASSIGN(auto rs, ptrace::RemoteSyscalls::start(t, regs.rip - arch::kSyscallInsnLen));
  struct Abandon {  // its registers need no putting back: it is killed
    ptrace::RemoteSyscalls& rs;
    ~Abandon() { rs.abandon(); }
  } abandon{rs};
  // The snapshot must not keep the program's files open (a pipe's reader would not see EOF).
  clock.mark("snapshot: intermediate's injection start");
  CKPT_TRY(rs.call("close_range", SYS_close_range, {0, ~0u, 0}));
  clock.mark("snapshot: intermediate's close_range");
  // Nor its session and group: a process in them keeps their IDs (the program's PID when it leads
  // them) allocated until it is reaped, which would fail a restore of that PID meanwhile, and a
  // signal sent to the program's group must not reach the snapshot.
  CKPT_TRY(rs.call("setsid", SYS_setsid));
  clock.mark("snapshot: intermediate's setsid");
  CKPT_TRY_ASSIGN(long child, rs.call("clone", SYS_clone, {0, landing, 0, 0, 0}));
  clock.mark("snapshot: intermediate's clone");
  Snapshot snap(static_cast<pid_t>(child));
  CKPT_TRY(wait_first_stop(snap.pid()));
  clock.mark("snapshot: its first stop");
  fault::point("snapshot", "snapshot process stopped");
  return snap;
}

// Injected in the stopped process: clone() without exit signal, the intermediate child's work,
// then wait4() for it.
Result<Snapshot> fork_in(DumpContext& ctx, ptrace::RemoteSyscalls& rs, RemoteScratch sc) {
  if (!rs.self_restoring())
    return errorf("pid {}: no rt_sigreturn frame for the injection", ctx.pid);
  char zeros[kLanding] = {};
  CKPT_TRY(write_remote(ctx.pid, sc.addr, zeros, sizeof zeros));
  auto& t = ctx.threads[0].tracee;
  unsigned long options = t.options();
  CKPT_TRY(t.set_options(options | PTRACE_O_TRACECLONE));
  t.set_clones_processes_only(true);  // the intermediate is a process: the waits need not poll
  // CLONE_VM: the intermediate child shares the process's memory, so that the page tables are
  // copied once (by the second fork), not twice. Without CLONE_THREAD it is a process of its own.
  PhaseClock clock(ctx.pid);
  Result<long> made = rs.call_raw(SYS_clone, {CLONE_VM, sc.addr, 0, 0, 0});
  Status reset = t.set_options(options);
  t.set_clones_processes_only(false);
  clock.mark("snapshot: intermediate clone");
  if (made.ok() && *made > 0) {
    pid_t mid = static_cast<pid_t>(*made);
    fault::point("snapshot", "intermediate child made");
    Result<Snapshot> snap = fork_in_mid(mid, options | PTRACE_O_TRACECLONE, sc.addr);
    clock.mark("snapshot: fork in the intermediate");
    CKPT_TRY(rs.call("wait4", SYS_wait4, {static_cast<uint64_t>(mid), 0, __WALL, 0}));
    clock.mark("snapshot: wait4");
    CKPT_TRY(reset);
    return snap;
  }
  CKPT_TRY(reset);
  if (!made.ok()) return made.error();
  return sys_error(static_cast<int>(-*made), fmt::format("clone in pid {}", ctx.pid));
}

}  // namespace

Snapshot& Snapshot::operator=(Snapshot&& o) noexcept {
  if (this != &o) {
    end();
    pid_ = o.pid_;
    o.pid_ = 0;
  }
  return *this;
}

void Snapshot::end() {
  if (pid_ == 0) return;
  kill_and_wait(pid_);
  pid_ = 0;
}

void Snapshot::kill_now() {
  if (pid_ != 0) ::kill(pid_, SIGKILL);
}

Result<Snapshot> take(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(auto pristine, read_pristine(ctx));
  Result<Snapshot> snap = make_error("snapshot: not taken");
  CKPT_TRY(ctx.with_remote(0, kLanding, [&](ptrace::RemoteSyscalls& rs, RemoteScratch sc) {
    snap = fork_in(ctx, rs, sc);
    return snap.ok() ? Status{} : Status(snap.error());
  }));
  for (auto& p : pristine) CKPT_TRY(put_back(snap->pid(), p));
  return snap;
}

}  // namespace ckpt::snapshot
