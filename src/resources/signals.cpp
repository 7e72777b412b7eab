#include "resources/signals.hpp"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>

#include "proc/status.hpp"

namespace ckpt::signals {
namespace {

constexpr int kMaxSignal = 64;

// The kernel's struct sigaction for rt_sigaction on x86-64.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

struct SigInfoRaw {
  uint8_t bytes[128];
};

Result<json> peek_queue(pid_t tid, bool shared) {
  json out = json::array();
  for (uint64_t off = 0;; ++off) {
    __ptrace_peeksiginfo_args args{off, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u, 1};
    SigInfoRaw info;
    long n = ::ptrace(PTRACE_PEEKSIGINFO, tid, &args, &info);
    if (n < 0) return sys_error(fmt::format("ptrace(PTRACE_PEEKSIGINFO) tid {}", tid));
    if (n == 0) break;
    out.push_back(std::vector<uint8_t>(info.bytes, info.bytes + sizeof(info.bytes)));
  }
  return out;
}

Status queue_signal(RestoreContext& ctx, ptrace::RemoteSyscalls& rs, pid_t tid, const json& raw,
                    bool shared) {
  auto bytes = raw.get<std::vector<uint8_t>>();
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, bytes.data(), bytes.size()));
  int32_t signo;
  std::memcpy(&signo, bytes.data(), sizeof(signo));
  if (shared)
    CKPT_TRY(rs.call("rt_sigqueueinfo", SYS_rt_sigqueueinfo,
                     {uint64_t(ctx.pid), uint64_t(signo), ctx.scratch.addr}));
  else
    CKPT_TRY(rs.call("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo,
                     {uint64_t(ctx.pid), uint64_t(tid), uint64_t(signo), ctx.scratch.addr}));
  return {};
}

}  // namespace

Status dump(DumpContext& ctx) {
  // Only signals that are caught or ignored have an action worth asking for: each question is
  // an injected call, paid for while the process is frozen.
  CKPT_TRY_ASSIGN(proc::ProcStatus status, proc::read_status(ctx.pid));
  uint64_t interesting = status.sig_cgt | status.sig_ign;
  json actions = json::array();
  CKPT_TRY(ctx.with_remote(
      0, sizeof(KernelSigaction), [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
        for (int sig = 1; sig <= kMaxSignal; ++sig) {
          if (sig == SIGKILL || sig == SIGSTOP || !(interesting & (uint64_t{1} << (sig - 1))))
            continue;
          CKPT_TRY(rs.call("rt_sigaction", SYS_rt_sigaction, {uint64_t(sig), 0, s.addr, 8}));
          KernelSigaction act;
          CKPT_TRY(read_remote(ctx.pid, s.addr, &act, sizeof(act)));
          if (act.handler == uint64_t(SIG_DFL) && act.flags == 0 && act.mask == 0) continue;
          actions.push_back({sig, act.handler, act.flags, act.restorer, act.mask});
        }
        return {};
      }));
  json pending;
  CKPT_TRY_ASSIGN(pending["shared"], peek_queue(ctx.pid, true));
  json per_thread = json::object();
  for (auto& t : ctx.threads) {
    CKPT_TRY_ASSIGN(json q, peek_queue(t.tid, false));
    if (!q.empty()) per_thread[std::to_string(t.tid)] = std::move(q);
  }
  pending["threads"] = std::move(per_thread);
  ctx.image["signals"] = {{"actions", std::move(actions)}, {"pending", std::move(pending)}};
  return {};
}

Status reset_in_puppet() {
  KernelSigaction dfl{};  // all zero: SIG_DFL, no flags, empty mask
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // Signals glibc reserves for itself (32, 33) are refused by its sigaction: go around it.
    if (::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(uint64_t)) < 0 && errno != EINVAL)
      return sys_error(fmt::format("reset the action of signal {}", sig));
  }
  return {};
}

Status restore(RestoreContext& ctx) {
  const json& sigs = (*ctx.image)["signals"];
  auto& rs = *ctx.main_remote;
  for (auto& a : sigs["actions"]) {
    KernelSigaction act{a[1], a[2], a[3], a[4]};
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &act, sizeof(act)));
    CKPT_TRY(rs.call("rt_sigaction", SYS_rt_sigaction, {a[0], ctx.scratch.addr, 0, 8}));
  }
  for (auto& raw : sigs["pending"]["shared"]) CKPT_TRY(queue_signal(ctx, rs, ctx.pid, raw, true));
  // A signal sent with tgkill (SI_TKILL) may only be queued again by the thread itself.
  for (auto& [tid_text, queue] : sigs["pending"]["threads"].items()) {
    pid_t tid = std::stoi(tid_text);
    for (auto& t : ctx.threads) {
      if (t.tid != tid) continue;
      if (tid == ctx.pid) {
        for (auto& raw : queue) CKPT_TRY(queue_signal(ctx, rs, tid, raw, false));
      } else {
        CKPT_TRY_ASSIGN(auto own, ptrace::RemoteSyscalls::start(t.tracee, ctx.trampoline));
        for (auto& raw : queue) CKPT_TRY(queue_signal(ctx, own, tid, raw, false));
      }
    }
  }
  return {};
}

}  // namespace ckpt::signals
