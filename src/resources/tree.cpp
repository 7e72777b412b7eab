#include "resources/tree.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>

#include "proc/misc.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"

namespace ckpt::tree {
namespace {

struct Ids {
  pid_t pid, ppid, pgid, sid;
};

using schema::GroupPlan;
using schema::SessionPlan;

// How a restored process gets its group, relative to what it inherits from its parent puppet
// (the root inherits the restorer's). nullopt: it cannot be rebuilt this way.
std::optional<schema::TreeRecord> group_plan(const Ids& me, const Ids* parent,
                                             const std::map<pid_t, size_t>& index,
                                             size_t my_index) {
  schema::TreeRecord t;
  if (me.sid == me.pid) {
    t.session = SessionPlan::lead;
  } else if (!parent && me.pgid == me.pid) {
    t.group = GroupPlan::lead;
  } else if (!parent || me.pgid == parent->pgid) {
    // inherits both
  } else if (me.pgid == me.pid) {
    t.group = GroupPlan::lead;
  } else {
    auto leader = index.find(me.pgid);
    if (leader == index.end() || leader->second >= my_index) return std::nullopt;
    t.group = GroupPlan::join;
    t.leader = me.pgid;
  }
  return t;
}

}  // namespace

Result<ChildState> check_child(pid_t parent, pid_t child) {
  auto status = proc::read_status(child);
  if (!status.ok()) return status.error().wrap(fmt::format("pid {}: its child {}", parent, child));
  if (status->state == 'Z') return ChildState::zombie;
  if (status->tracer_pid != 0)
    return errorf("pid {}: its child {} is traced by pid {}", parent, child, status->tracer_pid);
  if (auto same = proc::same_memory(parent, child); same.ok() && *same)
    return errorf("pid {}: its child {} shares its memory (vfork), which ckpt cannot save yet",
                  parent, child);
  return ChildState::live;
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
  std::vector<Ids> ids;
  std::map<pid_t, size_t> index;
  for (auto* ctx : procs) {
    CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(ctx->pid));
    index[ctx->pid] = ids.size();
    ids.push_back({ctx->pid, st.ppid, st.pgrp, st.session});
  }
  for (size_t i = 0; i < procs.size(); ++i) {
    const Ids& me = ids[i];
    auto parent = i == 0 ? index.end() : index.find(me.ppid);
    if (i != 0 && parent == index.end())
      return errorf("pid {}: its parent {} is not among the dumped processes", me.pid, me.ppid);
    const Ids* p = i == 0 ? nullptr : &ids[parent->second];
    if (p && me.sid != me.pid && me.sid != p->sid)
      return errorf(
          "pid {}: it is in session {}, which neither it nor its parent leads; ckpt "
          "cannot rebuild that",
          me.pid, me.sid);
    auto plan = group_plan(me, p, index, i);
    if (!plan)
      return errorf(
          "pid {}: its process group {} has no leader among the processes created "
          "before it, which ckpt cannot rebuild",
          me.pid, me.pgid);
    plan->ppid = me.ppid;
    plan->pgid = me.pgid;
    plan->sid = me.sid;
    procs[i]->rec.tree = *plan;
  }
  return {};
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

Status join_in_puppet(const schema::ProcessRecord& proc, bool root, bool shell_job) {
  if (root && shell_job) return {};
  const schema::TreeRecord& t = proc.tree;
  if (t.session == SessionPlan::lead && ::setsid() < 0) return sys_error("setsid");
  if (t.group == GroupPlan::lead && ::setpgid(0, 0) < 0) return sys_error("setpgid(0, 0)");
  if (t.group == GroupPlan::join && ::setpgid(0, t.leader) < 0)
    return sys_error(fmt::format("join process group {}", t.leader));
  return {};
}

}  // namespace ckpt::tree
