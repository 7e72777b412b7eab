#include "resources/tree.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "proc/misc.hpp"
#include "proc/pid_namespace.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "resources/namespaces.hpp"
#include "resources/tree_plan.hpp"

namespace ckpt::tree {
namespace {

using schema::GroupPlan;
using schema::SessionPlan;

// IDs that processes outside `tree` hold: their PIDs (when alive) and the groups and sessions
// they are in. No helper can take such an ID (clone3 fails with EEXIST while any process is in
// that session or group, leader or not), and the restorer's own session and group are here too.
std::set<pid_t> held_outside(const std::set<pid_t>& tree) {
  std::set<pid_t> held;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    const std::string name = e.path().filename().string();
    auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (err != std::errc() || end != name.data() + name.size() || tree.count(pid)) continue;
    auto st = proc::read_stat(pid);
    if (!st.ok()) continue;  // gone meanwhile
    if (st->state != 'Z') held.insert(pid);
    held.insert(st->pgrp);
    held.insert(st->session);
  }
  return held;
}

Result<std::vector<TreePlan>> plan_with_held(const std::vector<TreeIds>& ids) {
  std::set<pid_t> tree;
  for (auto& i : ids) tree.insert(i.pid);
  std::set<pid_t> held = held_outside(tree);
  return plan_tree(ids, [&](pid_t id) { return held.count(id) > 0; });
}

}  // namespace

Status check_pid_namespace(pid_t pid, const proc::ProcStatus& status) {
  // Per process: a dumper that entered a namespace below is deeper than its parent was.
  static std::pair<pid_t, size_t> own{0, 1};
  if (own.first != ::getpid()) {
    auto depth = proc::own_pid_ns_depth();
    own = {::getpid(), depth.ok() ? *depth : size_t{1}};
  }
  if (proc::pid_ns_depth(status) <= own.second) return {};
  if (proc::is_child_ns_init(status, own.second))
    return errorf(
        "pid {}: it is the init of a PID namespace of its own, which ckpt dumps only as "
        "the root of a dump (ckpt dump -t {})",
        pid, pid);
  return errorf(
      "pid {}: it lives in a PID namespace of its own (pid {} there) and is not its init; dump "
      "the namespace's init, or dump it from inside (nsenter --pid --mount --target its init, then "
      "ckpt dump)",
      pid, status.ns_tgid.back());
}

Result<ChildState> check_child(pid_t parent, pid_t child) {
  auto status = proc::read_status(child);
  if (!status.ok()) return status.error().wrap(fmt::format("pid {}: its child {}", parent, child));
  if (status->state == 'Z') return ChildState::zombie;
  CKPT_TRY(check_pid_namespace(child, *status));
  CKPT_TRY(namespaces::check_same_as_ckpt(child));
  if (status->tracer_pid != 0)
    return errorf("pid {}: its child {} is traced by pid {}", parent, child, status->tracer_pid);
  if (auto same = proc::same_memory(parent, child); same.ok() && *same)
    return errorf("pid {}: its child {} shares its memory (vfork), which ckpt cannot save yet",
                  parent, child);
  // Restored processes each get a table of their own: what one opened the other would not see.
  if (auto same = proc::same_file_table(parent, child); same.ok() && *same)
    return errorf(
        "pid {}: its child {} shares its file table (clone with CLONE_FILES), which ckpt cannot "
        "save yet",
        parent, child);
  return ChildState::live;
}

Status check_root(pid_t root) {
  CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(root));
  if (auto same = proc::same_file_table(st.ppid, root); same.ok() && *same)
    return errorf(
        "pid {}: it shares its file table with its parent, pid {} (clone with CLONE_FILES), which "
        "ckpt cannot save",
        root, st.ppid);
  return {};
}

Result<schema::ZombieRecord> dump_zombie(pid_t pid) {
  CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(pid));
  return schema::ZombieRecord{st.exit_code, st.comm};
}

[[noreturn]] void end_as_zombie(const schema::ZombieRecord& z) {
  int status = z.exit_status;
  ::prctl(PR_SET_NAME, z.comm.c_str());
  if (WIFSIGNALED(status)) {
    // Killed by a signal: die of it again, without writing a core file.
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    int sig = WTERMSIG(status);
    ::signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    ::sigprocmask(SIG_UNBLOCK, &only, nullptr);
    ::kill(::getpid(), sig);
  }
  ::_exit(WEXITSTATUS(status));
}

Status settle_zombies(const std::vector<pid_t>& zombies) {
  if (zombies.empty()) return {};
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, &old);
  for (pid_t z : zombies) {
    siginfo_t info;
    while (::waitid(P_PID, static_cast<id_t>(z), &info, WEXITED | WNOWAIT) < 0)
      if (errno != EINTR) return sys_error(fmt::format("wait for the zombie {}", z));
  }
  timespec now{0, 0};
  while (::sigtimedwait(&chld, nullptr, &now) == SIGCHLD) {
  }
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  return {};
}

Status dump(const std::vector<DumpContext*>& procs) {
  CKPT_TRY(dump_ids(procs));
  return dump_plan(procs);
}

Status dump_ids(const std::vector<DumpContext*>& procs) {
  for (auto* ctx : procs) {
    CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(ctx->pid));
    ctx->rec.tree = schema::TreeRecord{};
    ctx->rec.tree.ppid = st.ppid, ctx->rec.tree.pgid = st.pgrp, ctx->rec.tree.sid = st.session;
  }
  return {};
}

Status dump_plan(const std::vector<DumpContext*>& procs) {
  std::vector<TreeIds> ids;
  std::map<pid_t, size_t> index;
  for (auto* ctx : procs) {
    index[ctx->pid] = ids.size();
    auto& t = ctx->rec.tree;
    ids.push_back({ctx->pid, t.ppid, t.pgid, t.sid, ctx->zombie});
  }
  // Refuses here what the restore could not rebuild; the restore plans again from the IDs.
  CKPT_TRY_ASSIGN(auto plans, plan_with_held(ids));
  for (size_t i = 0; i < procs.size(); ++i) {
    schema::TreeRecord& t = procs[i]->rec.tree;
    // What the image's plan fields can say (older readers use them).
    if (plans[i].session == SessionStep::lead) t.session = SessionPlan::lead;
    if (plans[i].group == GroupStep::lead) t.group = GroupPlan::lead;
    auto leader = index.find(plans[i].leader);
    if (plans[i].group == GroupStep::join && leader != index.end() && leader->second < i) {
      t.group = GroupPlan::join;
      t.leader = plans[i].leader;
    }
  }
  return {};
}

Result<std::vector<TreePlan>> restore_plans(const std::vector<schema::ProcessRecord>& procs) {
  std::vector<TreeIds> ids;
  for (auto& p : procs)
    ids.push_back({p.pid, p.tree.ppid, p.tree.pgid, p.tree.sid, p.zombie.has_value()});
  auto plans = plan_with_held(ids);
  if (!plans.ok()) return plans.error().wrap("restore");
  return plans;
}

Result<Shape> shape(const std::vector<schema::ProcessRecord>& procs) {
  Shape s;
  std::map<pid_t, int> index;
  for (size_t i = 0; i < procs.size(); ++i) {
    pid_t pid = procs[i].pid;
    if (pid <= 0 || index.count(pid))
      return errorf("the image holds process {} twice or as 0", pid);
    int parent = -1;
    if (i > 0) {
      pid_t ppid = procs[i].tree.ppid;
      auto it = index.find(ppid);
      if (it == index.end())
        return errorf("process {} of the image comes before its parent {}", pid, ppid);
      parent = it->second;
    }
    index[pid] = static_cast<int>(i);
    s.pids.push_back(pid);
    s.parent.push_back(parent);
  }
  return s;
}

Status join_in_puppet(const TreePlan& t, bool root, bool shell_job) {
  if (root && shell_job) return {};
  if (t.session == SessionStep::lead && ::setsid() < 0) return sys_error("setsid");
  if (t.group == GroupStep::lead && ::setpgid(0, 0) < 0) return sys_error("setpgid(0, 0)");
  if (t.group == GroupStep::join && ::setpgid(0, t.leader) < 0)
    return sys_error(fmt::format("join process group {}", t.leader));
  return {};
}

Status join_in_puppet(const schema::ProcessRecord& proc, bool root, bool shell_job) {
  TreePlan t;
  const schema::TreeRecord& r = proc.tree;
  t.session = r.session == SessionPlan::lead ? SessionStep::lead : SessionStep::inherit;
  t.group = r.group == GroupPlan::lead   ? GroupStep::lead
            : r.group == GroupPlan::join ? GroupStep::join
                                         : GroupStep::inherit;
  t.leader = r.leader;
  return join_in_puppet(t, root, shell_job);
}

Status join_late_in_puppet(const TreePlan& t, bool root, bool shell_job) {
  if ((root && shell_job) || t.group != GroupStep::late) return {};
  if (::setpgid(0, t.leader) < 0)
    return sys_error(
        fmt::format("join process group {} (led by a process created later)", t.leader));
  return {};
}

}  // namespace ckpt::tree
