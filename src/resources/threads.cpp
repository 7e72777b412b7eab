#include "resources/threads.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <thread>
#include <unordered_set>

#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"
#include "ptrace/rseq_config.hpp"

namespace ckpt::threads {
namespace {

Status dump_kernel_state(DumpContext& ctx, size_t index, schema::ThreadRecord& t) {
  pid_t tid = ctx.threads[index].tid;
  CKPT_TRY_ASSIGN(ptrace::RseqConfig rseq, ptrace::rseq_config(tid));
  t.rseq = {rseq.rseq_abi_pointer, rseq.rseq_abi_size, rseq.signature, rseq.flags};
  uint64_t head = 0;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) < 0)
    return sys_error(fmt::format("get_robust_list tid {}", tid));
  t.robust_list = head;
  t.robust_list_len = len;
  return ctx.with_remote(index, 64, [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
    CKPT_TRY(rs.call("prctl(PR_GET_TID_ADDRESS)", SYS_prctl, {PR_GET_TID_ADDRESS, s.addr}));
    CKPT_TRY(rs.call("sigaltstack", SYS_sigaltstack, {0, s.addr + 16}));
    uint64_t clear_tid = 0;
    arch::KernelStack stack{};
    CKPT_TRY(read_remote(tid, s.addr, &clear_tid, sizeof(clear_tid)));
    CKPT_TRY(read_remote(tid, s.addr + 16, &stack, sizeof(stack)));
    t.clear_child_tid = clear_tid;
    t.altstack = {stack.sp, stack.size, stack.flags};
    return {};
  });
}

// How many single steps a thread gets to leave the vdso before it is run out of it instead. A
// clock read ends within ~100 instructions from anywhere in it, but a step costs ~40 us on this
// kind of VM (more under load): a read whose retry loop then outlasts the kernel's clock update
// (every tick) is retried for ever when stepped.
constexpr int kVdsoSteps = 256;
// The vdso is a few KiB: past this many more steps without leaving, something else holds it.
constexpr int kVdsoMaxSteps = kVdsoSteps + 8192;
// How long a thread run out of the vdso may take to reach its caller (microseconds, normally).
constexpr std::chrono::milliseconds kVdsoRunLimit{2000};

bool in_code_of(const proc::MapEntry& m, uint64_t pc) {
  return pc >= m.start && pc < m.end;
}

// Whether `addr` is where a call in the program's code returns to: executable, outside the vdso,
// right after a call instruction.
bool is_return_site(const DumpContext& ctx, uint64_t addr) {
  auto map = std::find_if(ctx.maps.begin(), ctx.maps.end(), [&](const proc::MapEntry& m) {
    return m.start + arch::kLongestCall <= addr && addr < m.end;
  });
  if (map == ctx.maps.end() || !(map->prot & PROT_EXEC) || map->kind == proc::MapKind::vdso)
    return false;
  std::array<uint8_t, arch::kLongestCall> code{};
  return read_remote(ctx.pid, addr - code.size(), code.data(), code.size()).ok() &&
         arch::follows_call(code);
}

// Where the vdso function a thread loops in returns to in the program. A loop is in a function's
// body, whose frame is set up (the kernel builds the vdso with frame pointers): rbp's chain leads
// out of the vdso.
Result<uint64_t> vdso_return_address(const DumpContext& ctx, pid_t tid, const ptrace::Regs& regs,
                                     const proc::MapEntry& vdso) {
  constexpr uint64_t kMaxFrames = 64 * 1024;  // a vdso function's frames are a few words
  uint64_t fp = regs.rbp;
  for (int depth = 0; depth < 8 && fp >= regs.rsp && fp - regs.rsp < kMaxFrames; ++depth) {
    std::array<uint64_t, 2> frame{};  // the caller's rbp, the return address
    if (!read_remote(ctx.pid, fp, frame.data(), sizeof(frame)).ok()) break;
    if (!in_code_of(vdso, frame[1])) {
      if (is_return_site(ctx, frame[1])) return frame[1];
      break;
    }
    if (frame[0] <= fp) break;
    fp = frame[0];
  }
  return errorf(
      "thread {} loops inside the vdso (pc {:#x}) and where it returns to is not found (rsp "
      "{:#x}, rbp {:#x}); ckpt cannot save it there, dump it again",
      tid, arch::pc(regs), regs.rsp, regs.rbp);
}

// Steps the thread out of the vdso; one that loops there after kVdsoSteps (a pc seen again) is
// run to its return address.
Status step_out_of_vdso(DumpContext& ctx, ptrace::Tracee& tracee, const proc::MapEntry& vdso,
                        ptrace::Regs regs) {
  auto inside = [&](const ptrace::Regs& r) {
    return in_code_of(vdso, arch::pc(r)) && arch::syscall_nr(r) < 0;
  };
  std::unordered_set<uint64_t> seen;
  for (int i = 0; inside(regs); ++i) {
    if (i >= kVdsoMaxSteps)
      return errorf("thread {} does not leave the vdso (pc {:#x})", tracee.tid(), arch::pc(regs));
    if (i >= kVdsoSteps && seen.contains(arch::pc(regs))) {
      CKPT_TRY_ASSIGN(uint64_t ret, vdso_return_address(ctx, tracee.tid(), regs, vdso));
      log::debug("dump", "thread {} loops in the vdso at {:#x}: run to {:#x}", tracee.tid(),
                 arch::pc(regs), ret);
      return tracee.run_to(ret, kVdsoRunLimit);
    }
    seen.insert(arch::pc(regs));
    CKPT_TRY(tracee.step());
    CKPT_TRY_ASSIGN(regs, tracee.regs());
  }
  return {};
}

// A thread stopped inside the vdso's code (not in a system call it makes) would go on, after a
// restore through a vdso proxy, in the old vdso's code reading data pages that are not there:
// it is taken out first, running only the vdso's own code.
Status leave_vdso(DumpContext& ctx, size_t index) {
  auto vdso = std::find_if(ctx.maps.begin(), ctx.maps.end(),
                           [](const proc::MapEntry& m) { return m.kind == proc::MapKind::vdso; });
  if (vdso == ctx.maps.end()) return {};
  auto& tracee = ctx.threads[index].tracee;
  CKPT_TRY_ASSIGN(ptrace::Regs regs, tracee.regs());
  if (!in_code_of(*vdso, arch::pc(regs)) || arch::syscall_nr(regs) >= 0) return {};
  CKPT_TRY_ASSIGN(uint64_t mask, tracee.signal_mask());
  // Every signal blocked but SIGTRAP, so that only the steps or the breakpoint stop it: their
  // traps are forced on the thread, and a forced signal found blocked would have the program's
  // handler for it reset to the default.
  CKPT_TRY(tracee.set_signal_mask(~(uint64_t{1} << (SIGTRAP - 1))));
  Status out = step_out_of_vdso(ctx, tracee, *vdso, regs);
  Status unmasked = tracee.set_signal_mask(mask);
  CKPT_TRY(out);
  return unmasked;
}

// /proc/PID/task/TID/syscall of a thread sleeping in restart_syscall: its arguments, stack and
// place; nothing for any other thread.
std::optional<arch::ResumedCall> in_restart_syscall_now(std::string_view text) {
  auto hex = [](std::string_view t) {
    return t.starts_with("0x") ? proc::parse_u64(t.substr(2), 16) : std::nullopt;
  };
  auto nr = proc::parse_u64(proc::next_token(text));
  if (!nr || *nr != SYS_restart_syscall) return std::nullopt;
  arch::ResumedCall c;
  for (uint64_t* field :
       {&c.args[0], &c.args[1], &c.args[2], &c.args[3], &c.args[4], &c.args[5], &c.sp, &c.pc}) {
    auto v = hex(proc::next_token(text));
    if (!v) return std::nullopt;
    *field = *v;
  }
  return c;
}

// A thread interrupted in restart_syscall is saved as interrupted in the call it resumes, found
// in its code (arch::restarted_call) or, when the code does not say, where the thread slept
// before the freeze (resumed_calls): restored, it repeats that call with its arguments, which
// restart_syscall kept. The live thread is left as it is; its kernel still has the restart block.
Status name_restarted_call(const DumpContext& ctx, pid_t tid, ptrace::Regs& regs) {
  pid_t pid = ctx.pid;
  // glibc loads the number right before the instruction; further back, other bytes could be
  // taken for a load.
  constexpr uint64_t kLookBack = 16;
  uint64_t insn = regs.rip - arch::kSyscallInsnLen;
  std::array<uint8_t, kLookBack> code{};
  uint64_t back = std::min(kLookBack, insn);
  bool read = read_remote(pid, insn - back, code.data(), back).ok();
  if (!read) {  // at the start of the code's mapping the page before may not be readable
    back = std::min(back, insn % 4096);
    read = read_remote(pid, insn - back, code.data(), back).ok();
  }
  if (read) {
    if (long nr = arch::restarted_call(std::span(code.data(), back)); nr != 0) {
      regs.orig_rax = static_cast<uint64_t>(nr);
      return {};
    }
  }
  if (ctx.tree) {
    auto seen = ctx.tree->resumed_calls.find(tid);
    if (seen != ctx.tree->resumed_calls.end() && seen->second.is_in(regs)) {
      log::debug("threads", "thread {} of pid {}: restart_syscall at {:#x} resumes call {}", tid,
                 pid, insn, seen->second.nr);
      regs.orig_rax = static_cast<uint64_t>(seen->second.nr);
      return {};
    }
  }
  return errorf(
      "thread {} of pid {} is resuming a system call an earlier stop cut short (restart_syscall "
      "at {:#x}) and neither its code nor where it slept before the freeze says which call; ckpt "
      "cannot save it (dump it again once the call returned)",
      tid, pid, insn);
}

Result<schema::ThreadRecord> dump_one(DumpContext& ctx, size_t index) {
  CKPT_TRY(leave_vdso(ctx, index));
  auto& tracee = ctx.threads[index].tracee;
  schema::ThreadRecord t;
  t.tid = tracee.tid();
  CKPT_TRY_ASSIGN(t.regs.r, tracee.regs());
  if (arch::in_restart_syscall(t.regs.r)) CKPT_TRY(name_restarted_call(ctx, t.tid, t.regs.r));
  CKPT_TRY_ASSIGN(t.xstate, tracee.xstate());
  CKPT_TRY_ASSIGN(t.sigmask, tracee.signal_mask());
  CKPT_TRY(dump_kernel_state(ctx, index, t));
  CKPT_TRY_ASSIGN(t.comm, proc::read_proc_file(ctx.pid, fmt::format("task/{}/comm", t.tid)));
  if (!t.comm.empty() && t.comm.back() == '\n') t.comm.pop_back();
  return t;
}

// What holds a thread's TID: a thread of a running process (an error naming it), or nothing any
// more (nullopt). Seen here: a killed process's SCHED_IDLE thread kept its TID taken for a moment
// after the parent had reaped the process (clone3 EEXIST, then no task with that TID): most
// likely the kernel frees a released task's IDs only after telling the parent.
std::optional<Error> tid_holder(pid_t pid, pid_t tid) {
  auto holder = proc::read_status(tid);
  if (!holder.ok()) return std::nullopt;
  return make_error(
      fmt::format("restore pid {}: thread {}: its TID is in use by a thread of pid {} "
                  "('{}', state {})",
                  pid, tid, holder->tgid, holder->name, holder->state),
      EEXIST);
}

Result<long> clone_thread(RestoreContext& ctx) {
  auto& rs = *ctx.main_remote;
  // The new thread must be ours from its first instant: born traced, stopped before it runs.
  auto& leader = ctx.threads[0].tracee;
  unsigned long options = leader.options();
  CKPT_TRY(leader.set_options(options | PTRACE_O_TRACECLONE));
  Result<long> made = rs.call("clone3", SYS_clone3, {ctx.scratch.addr, sizeof(clone_args)});
  CKPT_TRY(leader.set_options(options));
  return made;
}

Result<pid_t> create_thread(RestoreContext& ctx, pid_t tid) {
  clone_args args{};
  args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
  args.set_tid = ctx.scratch.addr + sizeof(args);
  args.set_tid_size = 1;
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &args, sizeof(args)));
  CKPT_TRY(write_remote(ctx.pid, args.set_tid, &tid, sizeof(tid)));
  constexpr auto kFreedWait = std::chrono::seconds(2);
  auto deadline = std::chrono::steady_clock::now() + kFreedWait;
  for (;;) {
    Result<long> made = clone_thread(ctx);
    if (made.ok()) {
      if (*made != tid)
        return errorf("restore pid {}: thread {} came back as {}", ctx.pid, tid, *made);
      return static_cast<pid_t>(*made);
    }
    if (made.error().errnum != EEXIST) return made.error();
    if (auto held = tid_holder(ctx.pid, tid)) return *held;
    if (std::chrono::steady_clock::now() > deadline)
      return errorf(
          "restore pid {}: thread {}: its TID stayed taken for {} s by a task already gone",
          ctx.pid, tid, kFreedWait.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Status restore_kernel_state(RestoreContext& ctx, ptrace::RemoteSyscalls& rs,
                            const schema::ThreadRecord& t) {
  CKPT_TRY_ASSIGN(long me, rs.call("set_tid_address", SYS_set_tid_address, {t.clear_child_tid}));
  if (me != t.tid) return errorf("restore: thread {} believes it is {}", t.tid, me);
  CKPT_TRY(rs.call("set_robust_list", SYS_set_robust_list, {t.robust_list, t.robust_list_len}));
  if (!(t.altstack.flags & SS_DISABLE)) {
    arch::KernelStack ss{t.altstack.sp, t.altstack.flags & ~SS_ONSTACK, 0, t.altstack.size};
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &ss, sizeof(ss)));
    CKPT_TRY(rs.call("sigaltstack", SYS_sigaltstack, {ctx.scratch.addr, 0}));
  }
  if (t.rseq.abi_pointer != 0)
    CKPT_TRY(rs.call("rseq", SYS_rseq, {t.rseq.abi_pointer, t.rseq.abi_size, 0, t.rseq.signature}));
  // /proc/PID/task/TID/comm is writable only from inside the thread group.
  char comm[16] = {};
  std::strncpy(comm, t.comm.c_str(), sizeof(comm) - 1);
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, comm, sizeof(comm)));
  CKPT_TRY(rs.call("prctl(PR_SET_NAME)", SYS_prctl, {PR_SET_NAME, ctx.scratch.addr}));
  return {};
}

}  // namespace

std::map<pid_t, arch::ResumedCall> resumed_calls(pid_t pid) {
  std::map<pid_t, arch::ResumedCall> out;
  auto tids = proc::list_threads(pid);
  if (!tids.ok()) return out;
  for (pid_t tid : *tids) {
    std::string rel = fmt::format("task/{}/syscall", tid);
    auto before = proc::read_proc_file(pid, rel);
    if (!before.ok()) continue;
    auto call = in_restart_syscall_now(*before);
    if (!call) continue;
    auto wchan = proc::read_proc_file(pid, fmt::format("task/{}/wchan", tid));
    // Still asleep in the same call after wchan was read: the name is that call's.
    auto after = proc::read_proc_file(pid, rel);
    if (!wchan.ok() || !after.ok() || *after != *before) continue;
    call->nr = arch::restarted_call_sleeping_in(*wchan, call->args[0]);
    if (call->nr != 0) out.emplace(tid, *call);
  }
  return out;
}

Status dump(DumpContext& ctx) {
  ctx.rec.threads.clear();
  for (size_t i = 0; i < ctx.threads.size(); ++i) {
    auto r = dump_one(ctx, i);
    if (!r.ok())
      return r.error().wrap(fmt::format("dump thread {} of pid {}", ctx.threads[i].tid, ctx.pid));
    ctx.rec.threads.push_back(std::move(*r));
  }
  return {};
}

Status restore(RestoreContext& ctx) {
  const auto& all = ctx.rec->threads;
  for (size_t i = 1; i < all.size(); ++i) {
    CKPT_TRY_ASSIGN(pid_t got, create_thread(ctx, all[i].tid));
    // It inherits the options the leader had at the clone.
    ThreadHandle h{
        got,
        ptrace::Tracee::adopt(got, ctx.threads[0].tracee.options() | PTRACE_O_TRACECLONE),
        {},
        {}};
    CKPT_TRY_ASSIGN(ptrace::StopInfo stop, h.tracee.wait_stop());
    if (stop.exited()) return errorf("restore pid {}: new thread {} died", ctx.pid, got);
    ctx.threads.push_back(std::move(h));
  }
  CKPT_TRY(restore_kernel_state(ctx, *ctx.main_remote, all[0]));
  for (size_t i = 1; i < all.size(); ++i) {
    CKPT_TRY_ASSIGN(auto rs, ptrace::RemoteSyscalls::start(ctx.threads[i].tracee, ctx.trampoline));
    CKPT_TRY(restore_kernel_state(ctx, rs, all[i]));
  }
  return {};
}

Status drop_puppet_rseq(RestoreContext& ctx) {
  CKPT_TRY_ASSIGN(ptrace::RseqConfig rseq, ptrace::rseq_config(ctx.pid));
  if (rseq.rseq_abi_pointer == 0) return {};
  constexpr uint64_t kRseqUnregister = 1;
  CKPT_TRY(ctx.main_remote->call(
      "rseq(unregister)", SYS_rseq,
      {rseq.rseq_abi_pointer, rseq.rseq_abi_size, kRseqUnregister, rseq.signature}));
  return {};
}

Status set_final_state(RestoreContext& ctx) {
  const auto& all = ctx.rec->threads;
  for (size_t i = 0; i < all.size(); ++i) {
    auto& t = ctx.threads[i].tracee;
    CKPT_TRY(t.set_xstate(all[i].xstate));
    // Every thread leaves from a stop inside signal delivery (the others' last RemoteSyscalls and
    // the main one's finish() take them there): the kernel does the restart.
    ptrace::Regs regs = arch::regs_for_kernel_restart(all[i].regs.r, false);
    if (i == 0) {
      ctx.main_remote->set_final(regs, all[i].sigmask);
    } else {
      CKPT_TRY(t.set_regs(regs));
      CKPT_TRY(t.set_signal_mask(all[i].sigmask));
    }
  }
  return {};
}

}  // namespace ckpt::threads
