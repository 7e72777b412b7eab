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
#include "resources/tree_plan.hpp"

namespace ckpt::tree {
namespace {

using schema::GroupPlan;
using schema::SessionPlan;

// A live process outside the tree holds `id`: its session or group cannot be made again.
bool alive_outside(pid_t id) {
  auto st = proc::read_stat(id);
  return st.ok() && st->state != 'Z';
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
  std::vector<TreeIds> ids;
  for (auto* ctx : procs) {
    CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(ctx->pid));
    ids.push_back({ctx->pid, st.ppid, st.pgrp, st.session, ctx->zombie});
  }
  CKPT_TRY_ASSIGN(auto plans, plan_tree(ids, alive_outside));
  for (size_t i = 0; i < procs.size(); ++i) procs[i]->rec.tree = plans[i];
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

Status join_late_in_puppet(const schema::ProcessRecord& proc, bool root, bool shell_job) {
  if ((root && shell_job) || proc.tree.group != GroupPlan::late) return {};
  if (::setpgid(0, proc.tree.leader) < 0)
    return sys_error(
        fmt::format("join process group {} (led by a process created later)", proc.tree.leader));
  return {};
}

}  // namespace ckpt::tree
