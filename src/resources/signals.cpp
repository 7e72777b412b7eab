#include "resources/signals.hpp"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "proc/status.hpp"

namespace ckpt {

// si_signo is the first int of every siginfo the kernel hands out.
int signals::siginfo_signo(const uint8_t* info, size_t size) {
  int32_t signo = 0;
  if (size >= sizeof signo) std::memcpy(&signo, info, sizeof signo);
  return signo;
}

TakenSignal::TakenSignal(TakenSignal&& o) noexcept
    : tgid_(o.tgid_), tid_(o.tid_), info_(std::move(o.info_)) {
  o.info_.clear();
}

TakenSignal& TakenSignal::operator=(TakenSignal&& o) noexcept {
  if (this != &o) {
    send_again();
    tgid_ = o.tgid_;
    tid_ = o.tid_;
    info_ = std::move(o.info_);
    o.info_.clear();
  }
  return *this;
}

TakenSignal::~TakenSignal() {
  send_again();
}

int TakenSignal::signo() const {
  return signals::siginfo_signo(info_.data(), info_.size());
}

void TakenSignal::send_again() {
  if (info_.empty()) return;
  if (::syscall(SYS_tgkill, tgid_, tid_, signo()) < 0 && errno != ESRCH)
    log::error("signals", "tid {}: signal {} it had taken is lost: {}", tid_, signo(),
               std::strerror(errno));
  info_.clear();
}

}  // namespace ckpt

namespace ckpt::signals {
namespace {

constexpr int kMaxSignal = 64;
constexpr size_t kSiginfoSize = 128;

Result<std::vector<schema::Bytes>> peek_queue(pid_t tid, bool shared) {
  std::vector<schema::Bytes> out;
  for (uint64_t off = 0;; ++off) {
    __ptrace_peeksiginfo_args args{off, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u, 1};
    schema::Bytes info(kSiginfoSize);
    long n = ::ptrace(PTRACE_PEEKSIGINFO, tid, &args, info.data());
    if (n < 0) return sys_error(fmt::format("ptrace(PTRACE_PEEKSIGINFO) tid {}", tid));
    if (n == 0) break;
    out.push_back(std::move(info));
  }
  return out;
}

Status queue_signal(RestoreContext& ctx, ptrace::RemoteSyscalls& rs, pid_t tid,
                    const schema::Bytes& info, bool shared) {
  if (info.size() != kSiginfoSize)
    return errorf("restore pid {}: a queued signal of {} bytes (siginfo has {})", ctx.pid,
                  info.size(), kSiginfoSize);
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, info.data(), info.size()));
  int signo = siginfo_signo(info.data(), info.size());
  if (shared)
    CKPT_TRY(rs.call("rt_sigqueueinfo", SYS_rt_sigqueueinfo,
                     {uint64_t(ctx.pid), uint64_t(signo), ctx.scratch.addr}));
  else
    CKPT_TRY(rs.call("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo,
                     {uint64_t(ctx.pid), uint64_t(tid), uint64_t(signo), ctx.scratch.addr}));
  return {};
}

}  // namespace

Status hold_taken(ThreadHandle& h, pid_t pid, const ptrace::StopInfo& stop) {
  if (stop.event() != 0 || stop.stop_signal() == 0) return {};
  std::vector<uint8_t> info(kSiginfoSize);
  if (::ptrace(PTRACE_GETSIGINFO, h.tid, nullptr, info.data()) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_GETSIGINFO) tid {}", h.tid));
  h.taken = TakenSignal(pid, h.tid, std::move(info));
  log::debug("signals", "tid {} stopped holding signal {}; queued again", h.tid, h.taken.signo());
  // Resumed without it, the thread drops the signal; the stop has cleared the interrupt the dump
  // asked for (any ptrace trap does), so it is asked again: the thread then stops on its next
  // turn in signal delivery instead of running on.
  Status stopped = h.tracee.stop_in_signal_delivery();
  if (!stopped && stopped.error().errnum == ESRCH) h.taken.forget();  // nobody left to get it
  return stopped;
}

Status put_back_taken(DumpContext& ctx) {
  bool any = std::any_of(ctx.threads.begin(), ctx.threads.end(),
                         [](const ThreadHandle& t) { return !t.taken.empty(); });
  if (!any) return {};
  return ctx.with_remote(
      0, kSiginfoSize, [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
        for (auto& t : ctx.threads) {
          if (t.taken.empty()) continue;
          CKPT_TRY(write_remote(ctx.pid, s.addr, t.taken.siginfo().data(), kSiginfoSize));
          CKPT_TRY(
              rs.call("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo,
                      {uint64_t(ctx.pid), uint64_t(t.tid), uint64_t(t.taken.signo()), s.addr}));
          t.taken.forget();
        }
        return {};
      });
}

Status dump(DumpContext& ctx) {
  // Only signals that are caught or ignored have an action worth asking for: each question is
  // an injected call, paid for while the process is frozen.
  CKPT_TRY_ASSIGN(proc::ProcStatus status, proc::read_status(ctx.pid));
  uint64_t interesting = status.sig_cgt | status.sig_ign;
  schema::SignalsRecord& out = ctx.rec.signals;
  out.actions.clear();
  CKPT_TRY(ctx.with_remote(
      0, sizeof(arch::KernelSigaction), [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
        for (int sig = 1; sig <= kMaxSignal; ++sig) {
          if (sig == SIGKILL || sig == SIGSTOP || !(interesting & (uint64_t{1} << (sig - 1))))
            continue;
          CKPT_TRY(rs.call("rt_sigaction", SYS_rt_sigaction,
                           {uint64_t(sig), 0, s.addr, arch::kSigsetSize}));
          arch::KernelSigaction act;
          CKPT_TRY(read_remote(ctx.pid, s.addr, &act, sizeof(act)));
          if (act.handler == uint64_t(SIG_DFL) && act.flags == 0 && act.mask == 0) continue;
          out.actions.push_back({sig, act.handler, act.flags, act.restorer, act.mask});
        }
        return {};
      }));
  CKPT_TRY_ASSIGN(out.pending, peek_queue(ctx.pid, true));
  for (size_t i = 0; i < ctx.threads.size(); ++i) {
    CKPT_TRY_ASSIGN(ctx.rec.threads.at(i).pending, peek_queue(ctx.threads[i].tid, false));
  }
  return {};
}

Status reread_shared_pending(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(ctx.rec.signals.pending, peek_queue(ctx.pid, true));
  return {};
}

Status reset_in_puppet() {
  arch::KernelSigaction dfl{};  // all zero: SIG_DFL, no flags, empty mask
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // Signals glibc reserves for itself (32, 33) are refused by its sigaction: go around it.
    if (::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, arch::kSigsetSize) < 0 && errno != EINVAL)
      return sys_error(fmt::format("reset the action of signal {}", sig));
  }
  // The image sets an alternate stack only where the program had one; ckpt's own (sanitizers
  // install one) would leave a handler with SA_ONSTACK running on memory that is gone.
  stack_t none{};
  none.ss_flags = SS_DISABLE;
  if (::sigaltstack(&none, nullptr) < 0) return sys_error("disable the alternate signal stack");
  return {};
}

Status restore(RestoreContext& ctx) {
  const schema::SignalsRecord& sigs = ctx.rec->signals;
  auto& rs = *ctx.main_remote;
  for (auto& a : sigs.actions) {
    arch::KernelSigaction act{a.handler, a.flags, a.restorer, a.mask};
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &act, sizeof(act)));
    CKPT_TRY(rs.call("rt_sigaction", SYS_rt_sigaction,
                     {uint64_t(a.signo), ctx.scratch.addr, 0, arch::kSigsetSize}));
  }
  for (auto& info : sigs.pending) CKPT_TRY(queue_signal(ctx, rs, ctx.pid, info, true));
  // A signal sent with tgkill (SI_TKILL) may only be queued again by the thread itself.
  const auto& threads = ctx.rec->threads;
  for (size_t i = 0; i < threads.size() && i < ctx.threads.size(); ++i) {
    if (threads[i].pending.empty()) continue;
    pid_t tid = ctx.threads[i].tid;
    if (i == 0) {
      for (auto& info : threads[i].pending) CKPT_TRY(queue_signal(ctx, rs, tid, info, false));
    } else {
      CKPT_TRY_ASSIGN(auto own,
                      ptrace::RemoteSyscalls::start(ctx.threads[i].tracee, ctx.trampoline));
      for (auto& info : threads[i].pending) CKPT_TRY(queue_signal(ctx, own, tid, info, false));
    }
  }
  return {};
}

}  // namespace ckpt::signals
