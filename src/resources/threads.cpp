#include "resources/threads.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/fs_util.hpp"
#include "common/hex.hpp"
#include "common/log.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::threads {
namespace {

constexpr int kPtraceGetRseqConfiguration = 0x420f;

struct RseqConfig {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

constexpr size_t kRegCount = sizeof(ptrace::Regs) / sizeof(uint64_t);

json regs_to_json(const ptrace::Regs& r) {
  const auto* p = reinterpret_cast<const uint64_t*>(&r);
  return json(std::vector<uint64_t>(p, p + kRegCount));
}

ptrace::Regs regs_from_json(const json& j) {
  ptrace::Regs r{};
  auto v = j.get<std::vector<uint64_t>>();
  std::memcpy(&r, v.data(), std::min(v.size(), kRegCount) * sizeof(uint64_t));
  return r;
}

Result<json> dump_kernel_state(DumpContext& ctx, size_t index) {
  pid_t tid = ctx.threads[index].tid;
  json j;
  RseqConfig rseq{};
  if (::ptrace(static_cast<__ptrace_request>(kPtraceGetRseqConfiguration), tid, sizeof(rseq),
               &rseq) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_GET_RSEQ_CONFIGURATION) tid {}", tid));
  j["rseq"] = {rseq.rseq_abi_pointer, rseq.rseq_abi_size, rseq.signature, rseq.flags};
  uint64_t head = 0;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) < 0)
    return sys_error(fmt::format("get_robust_list tid {}", tid));
  j["robust_list"] = {head, len};
  CKPT_TRY(ctx.with_remote(index, 64, [&](ptrace::RemoteSyscalls& rs, RemoteScratch s) -> Status {
    CKPT_TRY(rs.call("prctl(PR_GET_TID_ADDRESS)", SYS_prctl, {PR_GET_TID_ADDRESS, s.addr}));
    CKPT_TRY(rs.call("sigaltstack", SYS_sigaltstack, {0, s.addr + 16}));
    uint64_t words[5];
    CKPT_TRY(read_remote(tid, s.addr, words, sizeof(words)));
    j["clear_child_tid"] = words[0];
    // stack_t: ss_sp, ss_flags (int, padded), ss_size.
    j["sigaltstack"] = {words[2], words[3] & 0xffffffff, words[4]};
    return {};
  }));
  return j;
}

Result<json> dump_one(DumpContext& ctx, size_t index) {
  auto& t = ctx.threads[index].tracee;
  CKPT_TRY_ASSIGN(ptrace::Regs regs, t.regs());
  CKPT_TRY_ASSIGN(auto xstate, t.xstate());
  CKPT_TRY_ASSIGN(uint64_t mask, t.signal_mask());
  CKPT_TRY_ASSIGN(json j, dump_kernel_state(ctx, index));
  j["tid"] = t.tid();
  j["regs"] = regs_to_json(regs);
  j["xstate"] = to_hex(xstate);
  j["sigmask"] = mask;
  CKPT_TRY_ASSIGN(j["comm"], proc::read_proc_file(ctx.pid, fmt::format("task/{}/comm", t.tid())));
  return j;
}

Result<pid_t> create_thread(RestoreContext& ctx, pid_t tid) {
  auto& rs = *ctx.main_remote;
  CloneArgs args{};
  args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
  args.set_tid = ctx.scratch.addr + sizeof(CloneArgs);
  args.set_tid_size = 1;
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &args, sizeof(args)));
  CKPT_TRY(write_remote(ctx.pid, args.set_tid, &tid, sizeof(tid)));
  CKPT_TRY_ASSIGN(long got, rs.call("clone3", SYS_clone3, {ctx.scratch.addr, sizeof(args)}));
  if (got != tid) return errorf("restore pid {}: thread {} came back as {}", ctx.pid, tid, got);
  return static_cast<pid_t>(got);
}

Status restore_kernel_state(RestoreContext& ctx, ptrace::RemoteSyscalls& rs, const json& j) {
  pid_t tid = j["tid"];
  CKPT_TRY_ASSIGN(long me, rs.call("set_tid_address", SYS_set_tid_address, {j["clear_child_tid"]}));
  if (me != tid) return errorf("restore: thread {} believes it is {}", tid, me);
  CKPT_TRY(
      rs.call("set_robust_list", SYS_set_robust_list, {j["robust_list"][0], j["robust_list"][1]}));
  uint64_t ss[3] = {j["sigaltstack"][0], j["sigaltstack"][1], j["sigaltstack"][2]};
  if (!(ss[1] & SS_DISABLE)) {
    ss[1] &= ~uint64_t{SS_ONSTACK};
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, ss, sizeof(ss)));
    CKPT_TRY(rs.call("sigaltstack", SYS_sigaltstack, {ctx.scratch.addr, 0}));
  }
  const json& rseq = j["rseq"];
  if (rseq[0].get<uint64_t>() != 0)
    CKPT_TRY(rs.call("rseq", SYS_rseq, {rseq[0], rseq[1], 0, rseq[2]}));
  if (j.contains("comm")) {
    // /proc/PID/task/TID/comm is writable only from inside the thread group.
    std::string comm = j["comm"];
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    comm.resize(16, '\0');
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, comm.data(), comm.size()));
    CKPT_TRY(rs.call("prctl(PR_SET_NAME)", SYS_prctl, {PR_SET_NAME, ctx.scratch.addr}));
  }
  return {};
}

}  // namespace

Status dump(DumpContext& ctx) {
  json all = json::array();
  for (size_t i = 0; i < ctx.threads.size(); ++i) {
    auto r = dump_one(ctx, i);
    if (!r.ok())
      return r.error().wrap(fmt::format("dump thread {} of pid {}", ctx.threads[i].tid, ctx.pid));
    all.push_back(std::move(*r));
  }
  ctx.image["threads"] = std::move(all);
  return {};
}

Status restore(RestoreContext& ctx) {
  const json& all = (*ctx.image)["threads"];
  for (size_t i = 1; i < all.size(); ++i) {
    pid_t tid = all[i]["tid"];
    CKPT_TRY_ASSIGN(pid_t got, create_thread(ctx, tid));
    ThreadHandle h{got, ptrace::Tracee::adopt(got, ctx.threads[0].tracee.options())};
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
  RseqConfig rseq{};
  if (::ptrace(static_cast<__ptrace_request>(kPtraceGetRseqConfiguration), ctx.pid, sizeof(rseq),
               &rseq) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_GET_RSEQ_CONFIGURATION) pid {}", ctx.pid));
  if (rseq.rseq_abi_pointer == 0) return {};
  constexpr uint64_t kRseqUnregister = 1;
  CKPT_TRY(ctx.main_remote->call(
      "rseq(unregister)", SYS_rseq,
      {rseq.rseq_abi_pointer, rseq.rseq_abi_size, kRseqUnregister, rseq.signature}));
  return {};
}

Status set_final_state(RestoreContext& ctx) {
  const json& all = (*ctx.image)["threads"];
  for (size_t i = 0; i < all.size(); ++i) {
    auto& t = ctx.threads[i].tracee;
    CKPT_TRY(t.set_xstate(from_hex<std::vector<uint8_t>>(all[i]["xstate"].get<std::string>())));
    ptrace::Regs regs = ptrace::regs_for_restart(regs_from_json(all[i]["regs"]), false);
    uint64_t mask = all[i]["sigmask"];
    if (i == 0) {
      ctx.main_remote->set_final(regs, mask);
    } else {
      CKPT_TRY(t.set_regs(regs));
      CKPT_TRY(t.set_signal_mask(mask));
    }
  }
  return {};
}

}  // namespace ckpt::threads
