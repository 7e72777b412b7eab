// Helper::rollback: puts the target back into the state of a checkpoint, in place.
//
// Order matters: threads started since the checkpoint end first (their exit writes to memory,
// which is then restored); threads that ended are recreated before anything else changes (the
// step most likely to be refused); then mappings, pages, persistent ranges, descriptors and
// signal handlers are restored through one stopped thread, and finally every thread gets its
// registers, signal mask and alternate stack back.
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>

#include "app/rollback_freeze.hpp"
#include "app/rollback_helper.hpp"
#include "app/rollback_maps.hpp"
#include "common/log.hpp"
#include "proc/status.hpp"
#include "ptrace/remote_syscalls.hpp"

namespace ckpt::rollback {
namespace {

using ptrace::RemoteSyscalls;

constexpr int kCapSysAdmin = 21;
constexpr int kCapCheckpointRestore = 40;

// An injected clone may fail with -ERESTARTNOINTR when the thread has a stop pending (the
// kernel restarts such a call itself; injected ones are simply made again).
Result<long> call_clone(RemoteSyscalls& rs, const char* name, long nr,
                        std::array<uint64_t, 6> args) {
  constexpr long kERestartNoIntr = 513;
  for (int i = 0;; ++i) {
    CKPT_TRY_ASSIGN(long r, rs.call_raw(nr, args));
    if (r != -kERestartNoIntr || i == 100) {
      if (r < 0 && r > -4096)
        return sys_error(static_cast<int>(-r),
                         fmt::format("{} in tid {}", name, rs.tracee().tid()));
      return r;
    }
  }
}

uint64_t put_scratch(const TargetInfo& info, const void* data, size_t len, size_t offset = 0) {
  std::memcpy(info.rw->scratch + offset, data, len);
  return info.scratch() + offset;
}

// The handler of `sig` when tlongjmp() was called, or the checkpoint's: a handler installed
// with SA_RESETHAND (signal() in strict ISO C) is SIG_DFL again by the time it runs.
const KernelSigaction* handler_of(int sig, const Request& req, const Checkpoint& cp) {
  const KernelSigaction& now = req.handlers[sig - 1];
  if (now.handler > 1) return &now;  // neither SIG_DFL nor SIG_IGN
  const KernelSigaction& then = cp.handlers[static_cast<size_t>(sig - 1)];
  return cp.handlers_valid && then.handler > 1 ? &then : nullptr;
}

// The fault signal an x86 exception number (the frame's trapno) stands for, 0 if none.
int trap_signal(uint64_t trapno) {
  switch (trapno) {
    case 0:   // divide error
    case 16:  // x87 floating point
    case 19:  // SIMD floating point
      return SIGFPE;
    case 6:  // invalid opcode
      return SIGILL;
    case 13:  // general protection
      return SIGSEGV;
    default:
      return 0;
  }
}

// Which signal a kernel signal frame is for. Its siginfo is filled only for SA_SIGINFO handlers,
// so the signal masks decide: the handler runs with its signal and its sa_mask added to the mask
// saved in the frame, and `running_mask` (the mask when tlongjmp() was called) shows that. When
// that leaves several signals (SA_NODEFER handlers add nothing), the exception number in the
// frame's registers or the siginfo of an SA_SIGINFO handler picks one.
int frame_signal(const uint64_t* frame, uint64_t running_mask, const Request& req,
                 const Checkpoint& cp) {
  uint64_t saved_mask = frame[304 / 8];
  int info_signo = static_cast<int>(frame[312 / 8] & 0xffffffff);
  int trap_sig = trap_signal(frame[208 / 8]);
  uint64_t added = running_mask & ~saved_mask;
  std::vector<int> candidates;
  for (int s = 1; s <= kNsig; ++s) {
    const KernelSigaction* h = handler_of(s, req, cp);
    if (!h) continue;
    uint64_t self = (h->flags & SA_NODEFER) ? 0 : uint64_t{1} << (s - 1);
    if (((h->mask | self) & ~saved_mask) != added) continue;
    if ((h->flags & SA_SIGINFO) && info_signo == s) return s;
    candidates.push_back(s);
  }
  if (candidates.size() > 1 && std::count(candidates.begin(), candidates.end(), trap_sig))
    return trap_sig;
  return candidates.empty() ? 0 : candidates.front();
}

// The signal whose handler called tlongjmp(): the innermost kernel signal frame on the calling
// thread's stack. A frame starts with the return address the kernel pushed (the handler's
// sa_restorer), then a ucontext (flags, link, stack, 256 bytes of registers, mask) and a siginfo.
int find_handled_signal(pid_t pid, uint64_t rsp, const Request& req, const Checkpoint& cp) {
  if (!req.handlers_valid) return 0;
  std::vector<uint64_t> restorers;
  for (int s = 1; s <= kNsig; ++s)
    if (const KernelSigaction* h = handler_of(s, req, cp); h && h->restorer)
      restorers.push_back(h->restorer);
  if (restorers.empty()) return 0;
  std::vector<uint64_t> words(8192);  // up to 64 KiB above the stack pointer
  iovec local{words.data(), words.size() * 8};
  iovec remote{reinterpret_cast<void*>(rsp), words.size() * 8};
  // A partial read stops at the end of the stack mapping, which is all there is to see.
  ssize_t got = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (got <= 0) return 0;
  size_t n = static_cast<size_t>(got) / 8;
  constexpr size_t kFrameWords = 320 / 8, kFpstate = 232 / 8, kFlags = 1;
  for (size_t i = 0; i + kFrameWords < n; ++i) {
    if (std::find(restorers.begin(), restorers.end(), words[i]) == restorers.end()) continue;
    uint64_t frame = rsp + i * 8;
    uint64_t fp = words[i + kFpstate];
    bool flags_ok = (words[i + kFlags] & ~uint64_t{0xf}) == 0;
    bool fp_ok = fp == 0 || (fp > frame && fp < frame + 65536);
    if (!flags_ok || !fp_ok) continue;
    return frame_signal(&words[i], req.old_mask, req, cp);
  }
  return 0;
}

// Ends a thread the checkpoint did not have: it calls exit() where it stands. Its exit clears
// its tid word and walks its robust futex list in memory that is restored afterwards.
Status end_thread(FrozenThread& t, const TargetInfo& info) {
  pid_t tid = t.tid();
  CKPT_TRY_ASSIGN(ptrace::Regs r, t.tracee.regs());
  r.rip = info.syscall_gadget;
  r.rax = SYS_exit;
  r.rdi = 0;
  r.orig_rax = static_cast<uint64_t>(-1);
  CKPT_TRY(t.tracee.set_regs(r));
  CKPT_TRY(t.tracee.set_signal_mask(~uint64_t{0}));
  for (;;) {
    if (::ptrace(PTRACE_CONT, tid, nullptr, nullptr) < 0 && errno != ESRCH)
      return sys_error(fmt::format("ptrace(PTRACE_CONT) tid {}", tid));
    CKPT_TRY_ASSIGN(ptrace::StopInfo stop, t.tracee.wait_stop());
    if (stop.exited()) break;
  }
  return {};
}

struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

Status set_thread_kernel_state(FrozenThread& t, const ThreadRecord& rec, const TargetInfo& info) {
  CKPT_TRY_ASSIGN(auto rs, RemoteSyscalls::start(t.tracee, info.syscall_gadget));
  if (rec.robust_head)
    CKPT_TRY(rs.call("set_robust_list", SYS_set_robust_list, {rec.robust_head, rec.robust_len}));
  if (rec.rseq_addr)
    CKPT_TRY(rs.call("rseq", SYS_rseq, {rec.rseq_addr, rec.rseq_len, 0, rec.rseq_sig}));
  return rs.finish();
}

// Recreates a thread that ended since the checkpoint, stopped before it runs a single
// instruction, with its TLS and clear-child-tid address, and its old tid (clone3 set_tid). A
// thread that has only just ended may still be finishing its exit (in release_task, preempted on
// a busy machine) and hold its tid for a moment: clone3 says EEXIST, and is tried again a little
// later. If the tid stays taken, the thread gets a new one, which is written where glibc keeps
// its own (struct pthread's tid, at the clear-child-tid address) once memory is restored.
Result<pid_t> recreate_thread(RemoteSyscalls& rs, Freezer& fz, const ThreadRecord& rec,
                              const TargetInfo& info) {
  CloneArgs a{};
  a.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
            CLONE_SETTLS | (rec.tid_address ? CLONE_CHILD_CLEARTID : 0);
  a.child_tid = rec.tid_address;
  a.tls = rec.regs.fs_base;
  int32_t tid = rec.tid;
  a.set_tid = put_scratch(info, &tid, sizeof tid, 256);
  a.set_tid_size = 1;
  uint64_t args = put_scratch(info, &a, sizeof a);
  ptrace::Tracee& inj = rs.tracee();
  unsigned long opts = inj.options();
  CKPT_TRY(inj.set_options(opts | PTRACE_O_TRACECLONE));
  auto r = call_clone(rs, "clone3", SYS_clone3, {args, sizeof a});
  for (int i = 0; i < 200 && !r && r.error().errnum == EEXIST; ++i) {
    ::usleep(1000);
    r = call_clone(rs, "clone3", SYS_clone3, {args, sizeof a});
  }
  if (!r && r.error().errnum == EEXIST && rec.tid_address) {
    a.set_tid = 0;
    a.set_tid_size = 0;
    put_scratch(info, &a, sizeof a);
    r = call_clone(rs, "clone3", SYS_clone3, {args, sizeof a});
  }
  CKPT_TRY(inj.set_options(opts));
  if (!r) return std::move(r).error().wrap(fmt::format("recreating thread {}", rec.tid));
  pid_t made = static_cast<pid_t>(*r);
  int status = 0;
  while (::waitpid(made, &status, __WALL) < 0)
    if (errno != EINTR) return sys_error(fmt::format("waitpid new thread {}", made));
  fz.adopt(ptrace::Tracee::adopt(made, PTRACE_O_TRACESYSGOOD));
  CKPT_TRY(set_thread_kernel_state(*fz.find(made), rec, info));
  if (made != rec.tid) log::debug("rollback", "thread {} came back as {}", rec.tid, made);
  return made;
}

// Whether the target may recreate threads with chosen tids (clone3 set_tid).
Status check_can_recreate(pid_t pid, const std::vector<pid_t>& missing) {
  CKPT_TRY_ASSIGN(auto st, proc::read_status(pid));
  uint64_t caps = st.cap_eff;
  if (!(caps & (uint64_t{1} << kCapCheckpointRestore)) && !(caps & (uint64_t{1} << kCapSysAdmin)))
    return errorf(
        "threads {} ended since the checkpoint and the process lacks "
        "CAP_CHECKPOINT_RESTORE to recreate them",
        missing.front());
  for (pid_t tid : missing)
    if (::kill(tid, 0) == 0 || errno != ESRCH)
      return make_error(
          fmt::format("thread {} ended since the checkpoint and its tid is taken", tid), EBUSY);
  return {};
}

Status apply_plan(RemoteSyscalls& rs, const MapPlan& plan, pid_t snapshot, const TargetInfo& info) {
  for (auto& r : plan.unmap) CKPT_TRY(rs.call("munmap", SYS_munmap, {r.start, r.end - r.start}));
  for (auto& m : plan.remap) {
    const proc::MapEntry& f = m.from;
    uint64_t len = m.end - m.start;
    uint64_t prot = static_cast<uint64_t>(f.prot);
    bool anon = f.kind == proc::MapKind::anonymous || f.kind == proc::MapKind::anon_named ||
                f.kind == proc::MapKind::stack || f.kind == proc::MapKind::heap;
    if (anon && !f.shared) {
      CKPT_TRY(rs.call("mmap", SYS_mmap,
                       {m.start, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                        static_cast<uint64_t>(-1), 0}));
      continue;
    }
    // The snapshot still maps it: its map_files entry opens the very same file or memory object.
    std::string path = fmt::format("/proc/{}/map_files/{:x}-{:x}", snapshot, f.start, f.end);
    uint64_t p = put_scratch(info, path.c_str(), path.size() + 1);
    int flags = (f.shared && (f.prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    CKPT_TRY_ASSIGN(long fd,
                    rs.call("openat", SYS_openat,
                            {static_cast<uint64_t>(AT_FDCWD), p, static_cast<uint64_t>(flags)}));
    uint64_t mflags = static_cast<uint64_t>((f.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED);
    auto mapped = rs.call(
        "mmap", SYS_mmap,
        {m.start, len, prot, mflags, static_cast<uint64_t>(fd), f.offset + (m.start - f.start)});
    CKPT_TRY(rs.call("close", SYS_close, {static_cast<uint64_t>(fd)}));
    if (!mapped) return std::move(mapped).error().wrap(path);
  }
  for (auto& p : plan.protect)
    CKPT_TRY(rs.call("mprotect", SYS_mprotect,
                     {p.start, p.end - p.start, static_cast<uint64_t>(p.prot)}));
  return {};
}

RangeSet writable_ranges(const std::vector<proc::MapEntry>& maps) {
  RangeSet out;
  for (auto& m : maps)
    if (m.prot & PROT_WRITE) proc::append_range(out, m.start, m.end);
  return out;
}

Status restore_fds(RemoteSyscalls& rs, const Checkpoint& cp, pid_t pid) {
  CKPT_TRY_ASSIGN(auto now, list_fd_records(pid));
  for (auto& f : now) {
    auto it =
        std::find_if(cp.fds.begin(), cp.fds.end(), [&](const FdRecord& r) { return r.fd == f.fd; });
    uint64_t fd = static_cast<uint64_t>(f.fd);
    if (it == cp.fds.end() || it->dev != f.dev || it->ino != f.ino) {
      CKPT_TRY(rs.call("close", SYS_close, {fd}));
    } else if (f.regular && it->pos != f.pos) {
      CKPT_TRY(rs.call("lseek", SYS_lseek, {fd, it->pos, SEEK_SET}));
    }
  }
  return {};
}

Status restore_handlers(RemoteSyscalls& rs, const Checkpoint& cp, const Request& req,
                        const TargetInfo& info) {
  if (!cp.handlers_valid || !req.handlers_valid) return {};
  for (int sig = 1; sig <= kNsig; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    const KernelSigaction& want = cp.handlers[static_cast<size_t>(sig - 1)];
    if (want == req.handlers[sig - 1]) continue;
    uint64_t p = put_scratch(info, &want, sizeof want);
    CKPT_TRY(rs.call("rt_sigaction", SYS_rt_sigaction,
                     {static_cast<uint64_t>(sig), p, 0, sizeof(uint64_t)}));
  }
  return {};
}

Status restore_thread(FrozenThread& t, const ThreadRecord& rec, const TargetInfo& info) {
  ptrace::Regs final = arch::regs_for_kernel_restart(rec.regs, false);
  CKPT_TRY(t.tracee.set_xstate(rec.xstate));
  CKPT_TRY(t.tracee.set_regs(final));
  CKPT_TRY(t.tracee.set_signal_mask(rec.mask));
  if (rec.altstack_known) {
    CKPT_TRY_ASSIGN(auto rs, RemoteSyscalls::start(t.tracee, info.syscall_gadget));
    uint64_t p = put_scratch(info, &rec.altstack, sizeof rec.altstack);
    // EPERM when the restored thread stands on that very stack (it took the checkpoint from a
    // handler running there); the stack is then already the one it had.
    CKPT_TRY(rs.call_raw(SYS_sigaltstack, {p, 0}));
    CKPT_TRY(rs.finish());
    t.in_delivery_stop = false;
  }
  t.has_final = true;
  t.final_regs = final;
  return {};
}

// The threads of a rollback: those to recreate, those to end, and one that stays, through which
// system calls are made.
struct ThreadPlan {
  std::vector<const ThreadRecord*> missing;  // in the checkpoint, gone now
  std::vector<pid_t> extra;                  // here now, not in the checkpoint
  FrozenThread* injector = nullptr;
};

Result<ThreadPlan> plan_threads(Freezer& fz, const Checkpoint& cp, pid_t pid) {
  ThreadPlan plan;
  for (auto& t : fz.threads()) {
    auto rec = std::find_if(cp.threads.begin(), cp.threads.end(),
                            [&](const ThreadRecord& r) { return r.tid == t->tid(); });
    CKPT_TRY_ASSIGN(ptrace::Regs regs, t->tracee.regs());
    // The same tid with another thread pointer is another thread (the tid was given again): it
    // ends and the checkpoint's thread comes back.
    if (rec == cp.threads.end() || regs.fs_base != rec->regs.fs_base) {
      plan.extra.push_back(t->tid());
    } else if (!plan.injector || plan.injector->in_delivery_stop) {
      plan.injector = t.get();
    }
  }
  for (auto& rec : cp.threads) {
    FrozenThread* t = fz.find(rec.tid);
    if (!t || std::count(plan.extra.begin(), plan.extra.end(), rec.tid))
      plan.missing.push_back(&rec);
  }
  if (!plan.injector) return errorf("no thread of pid {} is one of the checkpoint's", pid);
  if (!plan.missing.empty()) {
    std::vector<pid_t> tids;
    for (auto* r : plan.missing) tids.push_back(r->tid);
    CKPT_TRY(check_can_recreate(pid, tids));
  }
  return plan;
}

// Recreates the missing threads, then ends the extra ones. Returns the tids the recreated
// threads got, by their checkpoint's tid.
Result<std::map<pid_t, pid_t>> bring_threads_back(RemoteSyscalls& rs, Freezer& fz,
                                                  const ThreadPlan& plan, const TargetInfo& info) {
  std::map<pid_t, pid_t> made;
  for (const ThreadRecord* rec : plan.missing) {
    if (std::count(plan.extra.begin(), plan.extra.end(), rec->tid)) {
      CKPT_TRY(end_thread(*fz.find(rec->tid), info));
      fz.forget(rec->tid);
    }
    CKPT_TRY_ASSIGN(made[rec->tid], recreate_thread(rs, fz, *rec, info));
  }
  for (pid_t tid : plan.extra) {
    if (FrozenThread* t = fz.find(tid); t && !made.count(tid)) {
      CKPT_TRY(end_thread(*t, info));
      fz.forget(tid);
    }
  }
  return made;
}

// A thread that came back with a new tid: glibc's record of it (struct pthread::tid, which the
// restored memory holds as the old one) gets the new one.
Status retid(pid_t pid, int mem_fd, const Checkpoint& cp, const std::map<pid_t, pid_t>& made) {
  for (auto& tids : made) {
    pid_t old_tid = tids.first;
    if (old_tid == tids.second) continue;
    auto rec = std::find_if(cp.threads.begin(), cp.threads.end(),
                            [old_tid](const ThreadRecord& r) { return r.tid == old_tid; });
    int32_t v = tids.second;
    CKPT_TRY(write_remote(pid, mem_fd, rec->tid_address, &v, sizeof v));
  }
  return {};
}

}  // namespace

Result<int> Helper::rollback(const Request& req) {
  Checkpoint* found =
      req.arg >= 0 && req.arg < INT32_MAX ? find(static_cast<int>(req.arg)) : nullptr;
  if (!found) return make_error(fmt::format("checkpoint {} is not kept", req.arg), EINVAL);
  Checkpoint& cp = *found;
  log::debug("rollback", "rollback to {} asked by {} (checkpoint taken by {})", cp.id, req.tid,
             cp.caller);
  StepTimer timer("rollback");
  CKPT_TRY_ASSIGN(Freezer fz, Freezer::freeze(target_));
  FrozenThread* caller = fz.find(req.tid);
  if (!caller) return errorf("thread {} is not a thread of pid {}", req.tid, target_);
  CKPT_TRY_ASSIGN(ptrace::Regs caller_regs, caller->tracee.regs());
  int sig = find_handled_signal(target_, caller_regs.rsp, req, cp);
  CKPT_TRY_ASSIGN(ThreadPlan threads, plan_threads(fz, cp, target_));
  auto kept = save_persistent();
  timer.step("freeze");
  std::map<pid_t, pid_t> made;  // recreated threads' tids, by their checkpoint's tid
  {
    CKPT_TRY_ASSIGN(auto rs, RemoteSyscalls::start(threads.injector->tracee, info_.syscall_gadget));
    threads.injector->in_delivery_stop = false;
    CKPT_TRY_ASSIGN(made, bring_threads_back(rs, fz, threads, info_));
    timer.step("threads");
    CKPT_TRY(restore_memory(rs, cp, timer));
    CKPT_TRY(retid(target_, mem_.get(), cp, made));
    restore_persistent(kept);
    CKPT_TRY(restore_fds(rs, cp, target_));
    CKPT_TRY(restore_handlers(rs, cp, req, info_));
    CKPT_TRY(rs.finish());
    timer.step("fds+handlers");
  }
  for (auto& rec : cp.threads) {
    pid_t tid = made.count(rec.tid) ? made[rec.tid] : rec.tid;
    CKPT_TRY(restore_thread(*fz.find(tid), rec, info_));
  }
  timer.step("registers");
  // Mappings made again are registered so that later writes are seen. The pages written back
  // are not write-protected here: each protected range costs a TLB flush, and a page left
  // unprotected only reads as written, which makes a later rollback copy it once more. The next
  // checkpoint protects them.
  CKPT_TRY_ASSIGN(auto final_maps, proc::read_maps(target_));
  CKPT_TRY(track_new_mappings(final_maps));
  cp.dirty.clear();
  finish_rollback(cp, sig, made.count(cp.caller) ? made[cp.caller] : cp.caller);
  answer(Answer::rolled_back, cp.id, nullptr, cp.request);
  publish_status();
  Status released = fz.release(true);
  if (!released) log::warn("rollback", "pid {}: {}", target_, released.error().message);
  timer.step("release");
  return cp.id;
}

std::vector<std::pair<PersistRange, std::vector<uint8_t>>> Helper::save_persistent() {
  std::vector<std::pair<PersistRange, std::vector<uint8_t>>> kept;
  for (auto& p : persist_) {
    std::vector<uint8_t> data(p.size);
    if (read_remote(target_, p.addr, data.data(), data.size()))
      kept.emplace_back(p, std::move(data));
  }
  return kept;
}

void Helper::restore_persistent(
    const std::vector<std::pair<PersistRange, std::vector<uint8_t>>>& kept) {
  for (auto& [p, data] : kept) {
    Status st = write_remote(target_, mem_.get(), p.addr, data.data(), data.size());
    if (!st)
      log::debug("rollback", "persist range {:#x} not written back: {}", p.addr,
                 st.error().message);
  }
}

Status Helper::restore_memory(RemoteSyscalls& rs, const Checkpoint& cp, StepTimer& timer) {
  CKPT_TRY_ASSIGN(auto now, proc::read_maps(target_));
  CKPT_TRY_ASSIGN(uint64_t heap_now, heap_end(target_, now));
  if (heap_now != cp.heap_end) {
    CKPT_TRY_ASSIGN(long brk, rs.call("brk", SYS_brk, {cp.heap_end}));
    if (static_cast<uint64_t>(brk) != cp.heap_end)
      log::debug("rollback", "brk({:#x}) gave {:#x}", cp.heap_end, brk);
    CKPT_TRY_ASSIGN(now, proc::read_maps(target_));
  }
  MapPlan plan = plan_mappings(cp.maps, now);
  CKPT_TRY(apply_plan(rs, plan, cp.snapshot.pid, info_));
  timer.step("mappings");
  CKPT_TRY_ASSIGN(auto after, proc::read_maps(target_));
  return restore_pages(cp, plan, after, timer);
}

Status Helper::restore_pages(const Checkpoint& cp, const MapPlan& plan,
                             const std::vector<proc::MapEntry>& now, StepTimer& timer) {
  CKPT_TRY_ASSIGN(PageScanner snap, PageScanner::open(cp.snapshot.pid));
  RangeSet written, own;
  CKPT_TRY(scanner_->own_data_split(plan.same_private, now, &written, &own));
  timer.step("scan");
  // Pages with data of their own in the snapshot but not here were dropped since (munmap'd
  // and mapped again, MADV_DONTNEED...): only where the target has no own data need the
  // snapshot be looked at.
  CKPT_TRY_ASSIGN(RangeSet dropped, snap.own_data(range_subtract(plan.same_private, own), cp.maps));
  timer.step("scan-snapshot");
  RangeSet changed = range_union(range_intersect(range_union(cp.dirty, written), own), dropped);
  RangeSet remapped;
  for (auto& m : plan.remap)
    if (!m.from.shared) proc::append_range(remapped, m.start, m.end);
  CKPT_TRY_ASSIGN(RangeSet remapped_own, snap.own_data(remapped, cp.maps));
  changed = range_union(changed, remapped_own);
  timer.step("diff");
  CKPT_TRY_ASSIGN(uint64_t bytes, copy_pages(cp.snapshot.pid, target_, mem_.get(), changed,
                                             writable_ranges(now), copy_buf_));
  timer.step("copy");
  last_restored_bytes_ = bytes;
  log::debug("rollback", "checkpoint {}: {} KiB copied back ({} ranges)", cp.id, bytes >> 10,
             changed.size());
  return {};
}

void Helper::finish_rollback(Checkpoint& cp, int sig, pid_t caller) {
  SharedStatus& s = ro_->status;
  loopcount_ = (cp.id == last_to_ && sig == last_sig_) ? loopcount_ + 1 : 1;
  last_to_ = cp.id;
  last_sig_ = sig;
  s.recovered = 1;
  s.from_state = current_state_;
  s.to_state = cp.id;
  s.sigtype = sig;
  s.numrecoveries += 1;
  s.rolled_back = 1;
  s.loopcount = loopcount_;
  current_state_ = cp.id;
  // Checkpoints taken after this one describe a future that did not happen.
  while (!kept_.empty() && kept_.back()->id != cp.id) {
    drop(std::move(kept_.back()));
    kept_.pop_back();
  }
  // The restored thread that called tsetjmp() holds the request lock again, as it did then.
  std::atomic_ref<uint32_t>(rw_->lock).store(static_cast<uint32_t>(caller));
}

}  // namespace ckpt::rollback
