#include "resources/settings.hpp"

#include <fcntl.h>
#include <linux/prctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "common/scoped_fd.hpp"
#include "proc/misc.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"
#include "resources/process.hpp"

namespace ckpt::settings {
namespace {

constexpr int kIoprioWhoProcess = 1;
constexpr uint32_t kSchedDeadline = 6;
// sched_attr flags that are state (the others ask sched_setattr to keep or clamp something).
constexpr uint64_t kSchedStateFlags = 0x01 | 0x02 | 0x04;  // RESET_ON_FORK, RECLAIM, DL_OVERRUN
constexpr uint64_t kThpExceptAdvised = 1 << 1;
constexpr uint32_t kSecbitNoSetuidFixup = 1 << 2;
constexpr uint32_t kSecbitKeepCaps = 1 << 4;
constexpr size_t kAffinityBytes = 1024;  // 8192 CPUs
constexpr size_t kNodeWords = 16;        // 1024 NUMA nodes
constexpr uint32_t kCapVersion3 = 0x20080522;

struct SchedAttr {  // the kernel's struct sched_attr (glibc 2.36 has no declaration)
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
  uint32_t sched_util_min, sched_util_max;
};

std::string policy_name(uint32_t p) {
  static constexpr std::array<const char*, 7> names = {"SCHED_OTHER",   "SCHED_FIFO", "SCHED_RR",
                                                       "SCHED_BATCH",   "SCHED_ISO",  "SCHED_IDLE",
                                                       "SCHED_DEADLINE"};
  return p < names.size() ? names[p] : fmt::format("policy {}", p);
}

// "cannot restore its WHAT: <the failure>": the line names the setting, the caller the thread.
Error cannot(std::string_view what, const Error& e) {
  return Error{e.errnum, fmt::format("cannot restore its {}: {}", what, e.message)};
}

// A syscall made by ckpt itself on the tracee (from outside): errno into an Error.
Status outside(long r, std::string_view name, pid_t tid) {
  if (r < 0) return sys_error(fmt::format("{} tid {}", name, tid));
  return {};
}

schema::Capabilities caps_of(const proc::ProcStatus& st) {
  return {st.cap_inh, st.cap_prm, st.cap_eff, st.cap_bnd, st.cap_amb};
}

bool same_caps(const schema::Capabilities& a, const schema::Capabilities& b) {
  return a.inheritable == b.inheritable && a.permitted == b.permitted &&
         a.effective == b.effective && a.bounding == b.bounding && a.ambient == b.ambient;
}

std::string caps_text(const schema::Capabilities& c) {
  return fmt::format(
      "effective {:#x}, permitted {:#x}, inheritable {:#x}, bounding {:#x}, ambient {:#x}",
      c.effective, c.permitted, c.inheritable, c.bounding, c.ambient);
}

std::vector<uint64_t> trimmed(std::vector<uint64_t> words) {
  while (!words.empty() && words.back() == 0) words.pop_back();
  return words;
}

Result<std::vector<uint64_t>> affinity_of(pid_t tid) {
  std::vector<uint64_t> mask(kAffinityBytes / 8);
  long n = ::syscall(SYS_sched_getaffinity, tid, kAffinityBytes, mask.data());
  CKPT_TRY(outside(n, "sched_getaffinity", tid));
  mask.resize(static_cast<size_t>(n) / 8);
  return trimmed(std::move(mask));
}

// ---- dump ------------------------------------------------------------------------------------

Status dump_from_outside(pid_t pid, const ThreadHandle& t, schema::ThreadSettings& s) {
  pid_t tid = t.tid;
  SchedAttr a{};
  CKPT_TRY(outside(::syscall(SYS_sched_getattr, tid, &a, sizeof a, 0), "sched_getattr", tid));
  s.sched_policy = a.sched_policy;
  s.sched_priority = a.sched_priority;
  s.sched_flags = a.sched_flags & kSchedStateFlags;
  if (a.sched_policy == kSchedDeadline)
    s.sched_deadline = schema::SchedDeadline{a.sched_runtime, a.sched_deadline, a.sched_period};
  // The raw call returns 20 - nice, never negative; sched_getattr has no nice for realtime.
  long prio = ::syscall(SYS_getpriority, PRIO_PROCESS, tid);
  CKPT_TRY(outside(prio, "getpriority", tid));
  s.nice = static_cast<int32_t>(20 - prio);
  // A thread pinned to its tracer's CPU for the dump is saved with its own mask.
  if (t.pin.pinned()) {
    s.affinity = trimmed(t.pin.before());
  } else {
    CKPT_TRY_ASSIGN(s.affinity, affinity_of(tid));
  }
  long io = ::syscall(SYS_ioprio_get, kIoprioWhoProcess, tid);
  CKPT_TRY(outside(io, "ioprio_get", tid));
  s.ioprio = static_cast<int32_t>(io);
  CKPT_TRY_ASSIGN(proc::ProcStatus st, proc::read_thread_status(pid, tid));
  s.caps = caps_of(st);
  s.no_new_privs = st.no_new_privs != 0;
  return {};
}

// Layout of the scratch memory for the calls below.
constexpr uint64_t kAtInt = 0, kAtMode = 8, kAtNodes = 16, kAtInt2 = kAtNodes + kNodeWords * 8;

Status dump_mempolicy(ptrace::RemoteSyscalls& rs, pid_t tid, RemoteScratch sc,
                      schema::ThreadSettings& s) {
  CKPT_TRY_ASSIGN(long r, rs.call_raw(SYS_get_mempolicy,
                                      {sc.addr + kAtMode, sc.addr + kAtNodes, kNodeWords * 64}));
  if (r == -ENOSYS) return {};  // a kernel without NUMA: nothing to keep
  if (r < 0) return sys_error(static_cast<int>(-r), "get_mempolicy");
  schema::MemPolicy mp;
  CKPT_TRY(read_remote(tid, sc.addr + kAtMode, &mp.mode, sizeof mp.mode));
  mp.nodes.resize(kNodeWords);
  CKPT_TRY(read_remote(tid, sc.addr + kAtNodes, mp.nodes.data(), kNodeWords * 8));
  mp.nodes = trimmed(std::move(mp.nodes));
  s.mempolicy = std::move(mp);
  return {};
}

Status dump_process_wide(ptrace::RemoteSyscalls& rs, pid_t tid, RemoteScratch sc,
                         schema::TaskRecord& task) {
  CKPT_TRY(rs.call("prctl(PR_GET_CHILD_SUBREAPER)", SYS_prctl,
                   {PR_GET_CHILD_SUBREAPER, sc.addr + kAtInt2}));
  int32_t subreaper = 0;
  CKPT_TRY(read_remote(tid, sc.addr + kAtInt2, &subreaper, sizeof subreaper));
  task.child_subreaper = subreaper != 0;
  CKPT_TRY_ASSIGN(long thp, rs.call("prctl(PR_GET_THP_DISABLE)", SYS_prctl, {PR_GET_THP_DISABLE}));
  task.thp_disable = (thp & 1) != 0;
  task.thp_except_advised = (static_cast<uint64_t>(thp) & kThpExceptAdvised) != 0;
  return {};
}

// What only the thread itself can tell.
Status dump_from_inside(DumpContext& ctx, size_t index, schema::ThreadSettings& s) {
  pid_t tid = ctx.threads[index].tid;
  return ctx.with_remote(
      index, kAtInt2 + 8, [&](ptrace::RemoteSyscalls& rs, RemoteScratch sc) -> Status {
        CKPT_TRY_ASSIGN(long slack,
                        rs.call("prctl(PR_GET_TIMERSLACK)", SYS_prctl, {PR_GET_TIMERSLACK}));
        s.timer_slack_ns = static_cast<uint64_t>(slack);
        CKPT_TRY(
            rs.call("prctl(PR_GET_PDEATHSIG)", SYS_prctl, {PR_GET_PDEATHSIG, sc.addr + kAtInt}));
        int32_t sig = 0;
        CKPT_TRY(read_remote(tid, sc.addr + kAtInt, &sig, sizeof sig));
        s.pdeathsig = sig;
        CKPT_TRY_ASSIGN(long bits,
                        rs.call("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS}));
        s.securebits = static_cast<uint32_t>(bits);
        CKPT_TRY(dump_mempolicy(rs, tid, sc, s));
        if (index == 0) CKPT_TRY(dump_process_wide(rs, tid, sc, ctx.rec.task));
        return Status{};
      });
}

// ---- restore: checks and helpers ----------------------------------------------------------------

Status check_caps(const schema::ProcessRecord& proc, const schema::ThreadRecord& t,
                  const schema::Capabilities& mine) {
  if (!t.settings.caps) return {};
  const schema::Capabilities& c = *t.settings.caps;
  constexpr int kCapSetpcap = 8;
  bool setpcap = (mine.effective >> kCapSetpcap) & 1;
  uint64_t inh_room = mine.inheritable | (setpcap ? mine.bounding : mine.permitted);
  uint64_t over = ((c.permitted | c.effective | c.ambient) & ~mine.permitted) |
                  (c.bounding & ~mine.bounding) | (c.inheritable & ~inh_room);
  if (over == 0) return {};
  return errorf(
      "restore pid {}: thread {} had capabilities {:#x} that this ckpt does not have ({}); a "
      "restore never hands a process more than the restorer has",
      proc.pid, t.tid, over, caps_text(mine));
}

Status capset(RestoreContext& ctx, ptrace::RemoteSyscalls& rs, uint64_t eff, uint64_t prm,
              uint64_t inh) {
  struct {
    uint32_t version;
    int32_t pid;
    uint32_t data[2][3];  // effective, permitted, inheritable; low then high 32 bits
  } arg{kCapVersion3, 0, {}};
  for (int half = 0; half < 2; ++half) {
    arg.data[half][0] = static_cast<uint32_t>(eff >> (32 * half));
    arg.data[half][1] = static_cast<uint32_t>(prm >> (32 * half));
    arg.data[half][2] = static_cast<uint32_t>(inh >> (32 * half));
  }
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &arg, sizeof arg));
  CKPT_TRY(rs.call("capset", SYS_capset, {ctx.scratch.addr, ctx.scratch.addr + 8}));
  return {};
}

Status restore_securebits(ptrace::RemoteSyscalls& rs, uint32_t want) {
  CKPT_TRY_ASSIGN(long now, rs.call("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS}));
  uint32_t differ = static_cast<uint32_t>(now) ^ want;
  if (differ == 0) return {};
  // KEEP_CAPS alone needs no privilege when set through its own prctl; the others CAP_SETPCAP.
  auto r = differ == kSecbitKeepCaps
               ? rs.call("prctl(PR_SET_KEEPCAPS)", SYS_prctl,
                         {PR_SET_KEEPCAPS, (want & kSecbitKeepCaps) ? 1u : 0u})
               : rs.call("prctl(PR_SET_SECUREBITS)", SYS_prctl, {PR_SET_SECUREBITS, want});
  if (!r.ok()) return cannot(fmt::format("securebits {:#x}", want), r.error());
  return {};
}

// Ambient capabilities need their bit in both permitted and inheritable sets, and raising them
// is refused once SECBIT_NO_CAP_AMBIENT_RAISE is set; the bounding set and securebits need
// CAP_SETPCAP. So: ambient first (with inheritable widened), then bounding set, securebits,
// and the final capset drops whatever the thread did not have, CAP_SETPCAP included.
Status restore_caps(RestoreContext& ctx, ptrace::RemoteSyscalls& rs, pid_t tid,
                    const schema::Capabilities& want, std::optional<uint32_t> securebits) {
  CKPT_TRY_ASSIGN(proc::ProcStatus st, proc::read_thread_status(ctx.pid, tid));
  schema::Capabilities now = caps_of(st);
  CKPT_TRY(rs.call("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", SYS_prctl,
                   {PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL}));
  if (want.ambient != 0) {
    auto widened =
        capset(ctx, rs, now.effective, now.permitted, now.inheritable | want.inheritable);
    if (!widened.ok()) return cannot("inheritable capabilities", widened.error());
  }
  for (int cap = 0; cap < 64; ++cap) {
    if (!((want.ambient >> cap) & 1)) continue;
    auto r = rs.call("prctl(PR_CAP_AMBIENT_RAISE)", SYS_prctl,
                     {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<uint64_t>(cap)});
    if (!r.ok()) return cannot(fmt::format("ambient capability {}", cap), r.error());
  }
  uint64_t drop = now.bounding & ~want.bounding;
  for (int cap = 0; cap < 64; ++cap) {
    if (!((drop >> cap) & 1)) continue;
    auto r =
        rs.call("prctl(PR_CAPBSET_DROP)", SYS_prctl, {PR_CAPBSET_DROP, static_cast<uint64_t>(cap)});
    if (!r.ok()) return cannot(fmt::format("bounding set {:#x}", want.bounding), r.error());
  }
  if (securebits) CKPT_TRY(restore_securebits(rs, *securebits));
  auto final_set = capset(ctx, rs, want.effective, want.permitted, want.inheritable);
  if (!final_set.ok()) return cannot("capabilities", final_set.error());
  CKPT_TRY_ASSIGN(st, proc::read_thread_status(ctx.pid, tid));
  if (!same_caps(caps_of(st), want))
    return errorf("cannot restore its capabilities ({}): they came back as {}", caps_text(want),
                  caps_text(caps_of(st)));
  return {};
}

Status restore_mempolicy(RestoreContext& ctx, ptrace::RemoteSyscalls& rs,
                         const schema::MemPolicy& mp) {
  uint64_t nodes = 0, maxnode = 0;
  if (!mp.nodes.empty()) {
    nodes = ctx.scratch.addr;
    // The kernel reads maxnode - 1 bits.
    maxnode = mp.nodes.size() * 64 + 1;
    CKPT_TRY(write_remote(ctx.pid, nodes, mp.nodes.data(), mp.nodes.size() * 8));
  }
  auto r =
      rs.call("set_mempolicy", SYS_set_mempolicy, {static_cast<uint32_t>(mp.mode), nodes, maxnode});
  // A kernel without NUMA has only the default policy, which is then what the thread had.
  if (!r.ok() && r.error().errnum == ENOSYS && mp.mode == 0 && mp.nodes.empty()) return {};
  if (!r.ok())
    return cannot(fmt::format("NUMA memory policy (mode {:#x}, nodes {:#x})", mp.mode,
                              mp.nodes.empty() ? 0 : mp.nodes[0]),
                  r.error());
  return {};
}

// A puppet starts with the restorer's ids, capabilities and securebits (it is a fork of it): a
// thread that had exactly those (a root service restored by root) needs none of the calls that
// set them, each an injected call (two ptrace stops).
Result<bool> has_restorers_privileges(RestoreContext& ctx, const schema::ThreadRecord& t) {
  const schema::ThreadSettings& s = t.settings;
  const schema::Credentials& c = ctx.rec->task.creds;
  CKPT_TRY_ASSIGN(proc::ProcStatus st, proc::read_thread_status(ctx.pid, t.tid));
  if (st.uid != c.uid || st.gid != c.gid || st.groups != c.groups) return false;
  if (s.caps && !same_caps(caps_of(st), *s.caps)) return false;
  int own_bits = ::prctl(PR_GET_SECUREBITS);
  return !s.securebits || (own_bits >= 0 && *s.securebits == static_cast<uint32_t>(own_bits));
}

Status restore_ids_and_caps(RestoreContext& ctx, ptrace::RemoteSyscalls& rs,
                            const schema::ThreadRecord& t) {
  const schema::ThreadSettings& s = t.settings;
  // Becoming another uid would clear every capability: kept through it, then set exactly.
  if (::geteuid() == 0 && s.caps) {
    CKPT_TRY_ASSIGN(long bits, rs.call("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS}));
    if (!(bits & kSecbitNoSetuidFixup))
      CKPT_TRY(rs.call("prctl(PR_SET_SECUREBITS)", SYS_prctl,
                       {PR_SET_SECUREBITS, static_cast<uint64_t>(bits) | kSecbitNoSetuidFixup}));
  }
  CKPT_TRY(process::restore_ids(ctx, rs));
  if (s.caps) return restore_caps(ctx, rs, t.tid, *s.caps, s.securebits);
  if (s.securebits) return restore_securebits(rs, *s.securebits);
  return {};
}

// Inside the thread, in the order of the header. Ids are changed by process::restore_ids.
Status restore_thread_privileges(RestoreContext& ctx, ptrace::RemoteSyscalls& rs,
                                 const schema::ThreadRecord& t) {
  const schema::ThreadSettings& s = t.settings;
  // 0 asks for the default slack; a realtime thread has 0, which its policy sets later.
  if (s.timer_slack_ns && *s.timer_slack_ns > 0) {
    auto r = rs.call("prctl(PR_SET_TIMERSLACK)", SYS_prctl, {PR_SET_TIMERSLACK, *s.timer_slack_ns});
    if (!r.ok()) return cannot(fmt::format("timer slack {} ns", *s.timer_slack_ns), r.error());
  }
  if (s.mempolicy) CKPT_TRY(restore_mempolicy(ctx, rs, *s.mempolicy));
  CKPT_TRY_ASSIGN(bool same, has_restorers_privileges(ctx, t));
  if (!same) CKPT_TRY(restore_ids_and_caps(ctx, rs, t));
  if (s.pdeathsig) {
    auto r = rs.call("prctl(PR_SET_PDEATHSIG)", SYS_prctl,
                     {PR_SET_PDEATHSIG, static_cast<uint64_t>(*s.pdeathsig)});
    if (!r.ok()) return cannot(fmt::format("parent-death signal {}", *s.pdeathsig), r.error());
  }
  return {};
}

Status restore_oom_score_adj(RestoreContext& ctx, int32_t want) {
  std::string path = proc::proc_path(ctx.pid, "oom_score_adj");
  CKPT_TRY_ASSIGN(std::string now, proc::read_proc_file(ctx.pid, "oom_score_adj"));
  if (proc::parse_i64(proc::trim(now)) == want) return {};
  Status written = proc::write_proc_text(path, std::to_string(want));
  if (!written.ok()) {
    Error e = written.error();
    if (e.errnum == EACCES)
      e.message += " (below ckpt's own oom_score_adj, which needs CAP_SYS_RESOURCE)";
    return cannot(fmt::format("oom_score_adj {}", want), e);
  }
  return {};
}

// Only a session leader's: any other restored process shares the autogroup of a session that
// already has its nice value (with --shell-job, the caller's, which is not ours to change).
Status restore_autogroup_nice(RestoreContext& ctx, int32_t want) {
  if (::getsid(ctx.pid) != ctx.pid) return {};
  CKPT_TRY_ASSIGN(auto now, proc::read_autogroup_nice(ctx.pid));
  if (!now)
    return cannot(fmt::format("autogroup nice value {}", want),
                  Error{0, "this kernel has no autogroups"});
  if (*now == want) return {};
  // Without CAP_SYS_ADMIN the kernel rate-limits these writes machine-wide (EAGAIN meanwhile).
  std::string path = proc::proc_path(ctx.pid, "autogroup");
  Status written;
  for (int tries = 0; tries < 25; ++tries) {
    written = proc::write_proc_text(path, std::to_string(want));
    if (written.ok() || written.error().errnum != EAGAIN) break;
    ::usleep(50 * 1000);
  }
  if (!written.ok()) return cannot(fmt::format("autogroup nice value {}", want), written.error());
  return {};
}

Status restore_process_wide(RestoreContext& ctx) {
  const schema::TaskRecord& task = ctx.rec->task;
  if (task.oom_score_adj) CKPT_TRY(restore_oom_score_adj(ctx, *task.oom_score_adj));
  if (task.autogroup_nice) CKPT_TRY(restore_autogroup_nice(ctx, *task.autogroup_nice));
  if (task.child_subreaper) {
    auto r = ctx.main_remote->call("prctl(PR_SET_CHILD_SUBREAPER)", SYS_prctl,
                                   {PR_SET_CHILD_SUBREAPER, *task.child_subreaper ? 1u : 0u});
    if (!r.ok()) return cannot("child subreaper flag", r.error());
  }
  return {};
}

// ---- restore: scheduling, from outside ------------------------------------------------------

Status restore_affinity(pid_t tid, const std::vector<uint64_t>& want) {
  if (want.empty()) return {};
  if (::syscall(SYS_sched_setaffinity, tid, want.size() * 8, want.data()) < 0)
    return cannot("CPU affinity", sys_error("sched_setaffinity"));
  // The kernel narrows a mask to the CPUs this machine (and ckpt's cpuset) offers.
  CKPT_TRY_ASSIGN(auto got, affinity_of(tid));
  if (got != trimmed(want))
    return errorf("cannot restore its CPU affinity {:#x}: only {:#x} is available here", want[0],
                  got.empty() ? 0 : got[0]);
  return {};
}

Status restore_policy(pid_t tid, const schema::ThreadSettings& s) {
  SchedAttr a{};
  a.size = sizeof a;
  a.sched_policy = *s.sched_policy;
  a.sched_flags = s.sched_flags.value_or(0) & kSchedStateFlags;
  a.sched_nice = s.nice.value_or(0);
  a.sched_priority = s.sched_priority.value_or(0);
  if (s.sched_deadline) {
    a.sched_runtime = s.sched_deadline->runtime;
    a.sched_deadline = s.sched_deadline->deadline;
    a.sched_period = s.sched_deadline->period;
  }
  if (::syscall(SYS_sched_setattr, tid, &a, 0) < 0)
    return cannot(fmt::format("scheduling policy {} priority {}", policy_name(a.sched_policy),
                              a.sched_priority),
                  sys_error("sched_setattr"));
  return {};
}

Status restore_thread_scheduling(pid_t tid, const schema::ThreadSettings& s) {
  // Before the policy: a SCHED_DEADLINE thread must keep every CPU, and refuses a new mask.
  CKPT_TRY(restore_affinity(tid, s.affinity));
  if (s.ioprio && ::syscall(SYS_ioprio_get, kIoprioWhoProcess, tid) != *s.ioprio &&
      ::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid, *s.ioprio) < 0)
    return cannot(fmt::format("I/O priority {:#x}", *s.ioprio), sys_error("ioprio_set"));
  if (s.sched_policy) CKPT_TRY(restore_policy(tid, s));
  // sched_setattr sets the nice value only for the normal policies; a realtime thread has one too.
  if (s.nice && ::syscall(SYS_setpriority, PRIO_PROCESS, tid, *s.nice) < 0)
    return cannot(fmt::format("nice value {}", *s.nice), sys_error("setpriority"));
  return {};
}

}  // namespace

Status dump(DumpContext& ctx) {
  for (size_t i = 0; i < ctx.threads.size(); ++i) {
    pid_t tid = ctx.threads[i].tid;
    schema::ThreadSettings& s = ctx.rec.threads.at(i).settings;
    Status st = dump_from_outside(ctx.pid, ctx.threads[i], s);
    if (st.ok()) st = dump_from_inside(ctx, i, s);
    if (!st.ok()) return st.error().wrap(fmt::format("settings of thread {}", tid));
  }
  CKPT_TRY_ASSIGN(std::string adj, proc::read_proc_file(ctx.pid, "oom_score_adj"));
  auto value = proc::parse_i64(proc::trim(adj));
  if (!value) return errorf("/proc/{}/oom_score_adj: '{}' is not a number", ctx.pid, adj);
  ctx.rec.task.oom_score_adj = static_cast<int32_t>(*value);
  CKPT_TRY_ASSIGN(ctx.rec.task.autogroup_nice, proc::read_autogroup_nice(ctx.pid));
  return {};
}

Status check_before_restore(const schema::ProcessRecord& proc) {
  CKPT_TRY_ASSIGN(proc::ProcStatus me, proc::read_status(::getpid()));
  for (auto& t : proc.threads) CKPT_TRY(check_caps(proc, t, caps_of(me)));
  return {};
}

Status restore_early(RestoreContext& ctx) {
  const schema::TaskRecord& task = ctx.rec->task;
  if (!task.thp_disable) return {};
  // The puppet inherited the restorer's flag: set either way.
  uint64_t flags =
      *task.thp_disable && task.thp_except_advised.value_or(false) ? kThpExceptAdvised : 0;
  auto r = ctx.main_remote->call("prctl(PR_SET_THP_DISABLE)", SYS_prctl,
                                 {PR_SET_THP_DISABLE, *task.thp_disable ? 1u : 0u, flags});
  if (!r.ok()) return cannot("THP disable flag", r.error());
  return {};
}

Status restore_no_new_privs(RestoreContext& ctx) {
  const auto& all = ctx.rec->threads;
  for (size_t i = 0; i < all.size(); ++i) {
    if (!all[i].settings.no_new_privs.value_or(false)) continue;
    auto set = [&](ptrace::RemoteSyscalls& rs) -> Status {
      auto r = rs.call("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1});
      if (!r.ok())
        return cannot("no_new_privs flag", r.error()).wrap(fmt::format("thread {}", all[i].tid));
      return {};
    };
    if (i == 0) {
      CKPT_TRY(set(*ctx.main_remote));
    } else {
      CKPT_TRY_ASSIGN(auto rs,
                      ptrace::RemoteSyscalls::start(ctx.threads[i].tracee, ctx.trampoline));
      CKPT_TRY(set(rs));
    }
  }
  return {};
}

Status restore_privileges(RestoreContext& ctx) {
  CKPT_TRY(restore_process_wide(ctx));
  const auto& all = ctx.rec->threads;
  for (size_t i = 0; i < all.size(); ++i) {
    Status st;
    if (i == 0) {
      st = restore_thread_privileges(ctx, *ctx.main_remote, all[0]);
    } else {
      CKPT_TRY_ASSIGN(auto rs,
                      ptrace::RemoteSyscalls::start(ctx.threads[i].tracee, ctx.trampoline));
      st = restore_thread_privileges(ctx, rs, all[i]);
    }
    if (!st.ok()) return st.error().wrap(fmt::format("thread {}", all[i].tid));
  }
  return process::restore_dumpable(ctx);
}

Status restore_scheduling(RestoreContext& ctx) {
  for (auto& t : ctx.rec->threads) {
    // Pinned for the build: a thread whose image records no mask gets the restorer's.
    Status st =
        t.settings.affinity.empty() ? restore_affinity(t.tid, ctx.mask_before_pin) : Status{};
    if (st.ok()) st = restore_thread_scheduling(t.tid, t.settings);
    if (!st.ok()) return st.error().wrap(fmt::format("thread {}", t.tid));
  }
  return {};
}

}  // namespace ckpt::settings
