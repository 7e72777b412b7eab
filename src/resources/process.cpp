#include "resources/process.hpp"

#include <linux/prctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/fs_util.hpp"
#include "proc/limits.hpp"
#include "proc/misc.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "resources/deleted_files.hpp"

namespace ckpt::process {
namespace {

constexpr int kRlimits = RLIM_NLIMITS;

Status dump_layout(DumpContext& ctx, schema::TaskRecord& task) {
  CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(ctx.pid));
  schema::MmLayout& mm = task.mm;
  mm.start_code = st.start_code, mm.end_code = st.end_code;
  mm.start_data = st.start_data, mm.end_data = st.end_data;
  mm.start_brk = st.start_brk, mm.start_stack = st.start_stack;
  mm.arg_start = st.arg_start, mm.arg_end = st.arg_end;
  mm.env_start = st.env_start, mm.env_end = st.env_end;
  CKPT_TRY_ASSIGN(std::string auxv, proc::read_proc_file(ctx.pid, "auxv"));
  mm.auxv.assign(auxv.begin(), auxv.end());
  return ctx.with_remote(0, 64, [&](ptrace::RemoteSyscalls& rs, RemoteScratch) -> Status {
    CKPT_TRY_ASSIGN(long brk, rs.call("brk", SYS_brk, {0}));
    mm.brk = static_cast<uint64_t>(brk);
    CKPT_TRY_ASSIGN(long dumpable, rs.call("prctl(PR_GET_DUMPABLE)", SYS_prctl, {PR_GET_DUMPABLE}));
    task.dumpable = static_cast<int32_t>(dumpable);
    return {};
  });
}

// chroot() into a directory needs a path to it, which a removed one no longer has.
Status check_root(pid_t pid, const std::string& root) {
  if (!root.ends_with(" (deleted)")) return {};
  struct stat st;
  std::string link = proc::proc_path(pid, "root");
  if (::stat(link.c_str(), &st) < 0) return sys_error(fmt::format("stat {}", link));
  if (st.st_nlink != 0) return {};
  return errorf("pid {}: its root directory {} was removed, which ckpt cannot restore", pid, root);
}

}  // namespace

Status dump(DumpContext& ctx) {
  schema::TaskRecord& task = ctx.rec.task;
  CKPT_TRY(dump_layout(ctx, task));
  CKPT_TRY_ASSIGN(proc::ProcStatus status, proc::read_status(ctx.pid));
  task.creds.uid = status.uid;
  task.creds.gid = status.gid;
  task.creds.groups = status.groups;
  task.no_new_privs = status.no_new_privs != 0;
  task.umask = status.umask.value_or(022);
  CKPT_TRY_ASSIGN(task.exe, proc::read_proc_link(ctx.pid, "exe"));
  CKPT_TRY_ASSIGN(task.cwd, proc::read_proc_link(ctx.pid, "cwd"));
  CKPT_TRY_ASSIGN(task.root, proc::read_proc_link(ctx.pid, "root"));
  CKPT_TRY_ASSIGN(task.cwd_deleted, deleted_files::save_cwd(ctx, task.cwd));
  CKPT_TRY(check_root(ctx.pid, task.root));
  CKPT_TRY_ASSIGN(task.exe_deleted, deleted_files::save_exe(ctx, task.exe));
  CKPT_TRY_ASSIGN(task.personality, proc::read_personality(ctx.pid));
  // Not prlimit(): for a process of another user it needs CAP_SYS_RESOURCE, which root may lack.
  CKPT_TRY_ASSIGN(auto limits, proc::read_limits(ctx.pid));
  task.rlimits.clear();
  for (auto& l : limits) task.rlimits.push_back({l.cur, l.max});
  return {};
}

namespace {

bool have_sys_resource() {
  auto me = proc::read_status(::getpid());
  constexpr int kCapSysResource = 24;
  return me.ok() && (me->cap_eff >> kCapSysResource & 1);
}

std::string limit_text(uint64_t v) {
  return v == RLIM_INFINITY ? "unlimited" : std::to_string(v);
}

// The puppet is a copy of the restorer: without CAP_SYS_RESOURCE it cannot raise a hard limit
// above the restorer's own. Said before anything is created, naming the process and the limit.
Status check_limits(const schema::ProcessRecord& proc) {
  if (have_sys_resource()) return {};
  for (int r = 0; r < static_cast<int>(proc.task.rlimits.size()) && r < kRlimits; ++r) {
    rlimit own;
    if (::getrlimit(static_cast<__rlimit_resource>(r), &own) < 0)
      return sys_error(fmt::format("getrlimit {}", proc::rlimit_name(r)));
    uint64_t want = proc.task.rlimits[r].max;
    if (want > own.rlim_max)
      return errorf(
          "restore pid {}: cannot restore its {} (hard limit {}): it is above ckpt's own ({}) and "
          "raising it needs CAP_SYS_RESOURCE",
          proc.pid, proc::rlimit_name(r), limit_text(want), limit_text(own.rlim_max));
  }
  return {};
}

}  // namespace

Status check_before_restore(const schema::ProcessRecord& proc) {
  const schema::Credentials& c = proc.task.creds;
  CKPT_TRY(check_limits(proc));
  if (::geteuid() == 0) return {};
  uid_t me = ::geteuid();
  gid_t my_gid = ::getegid();
  for (auto u : c.uid)
    if (u != me) return errorf("the image belongs to uid {}; only root may restore it", u);
  for (auto g : c.gid)
    if (g != my_gid) return errorf("the image has gid {}; only root may restore it", g);
  return {};
}

Status restore_in_puppet(const schema::ProcessRecord& proc, const HandedFds& handed) {
  const schema::TaskRecord& t = proc.task;
  if (t.cwd_deleted) {
    int dir = handed.find(deleted_files::handed_key(*t.cwd_deleted));
    if (dir < 0) return errorf("its removed cwd {} was not recreated", t.cwd);
    if (::fchdir(dir) < 0) return sys_error(fmt::format("fchdir to the removed {}", t.cwd));
  } else if (::chdir(t.cwd.c_str()) < 0) {
    return sys_error(fmt::format("chdir {}", t.cwd));
  }
  // Last of the path lookups in the puppet: its files are already open, from ckpt's own root.
  if (!t.root.empty() && t.root != "/" && ::chroot(t.root.c_str()) < 0)
    return sys_error(fmt::format("chroot {}", t.root));
  ::umask(t.umask & 0777);
  for (int r = 0; r < static_cast<int>(t.rlimits.size()) && r < kRlimits; ++r) {
    rlimit lim{t.rlimits[r].cur, t.rlimits[r].max};
    if (::setrlimit(static_cast<__rlimit_resource>(r), &lim) < 0)
      return sys_error(fmt::format("cannot restore its {} (soft {}, hard {}): setrlimit",
                                   proc::rlimit_name(r), limit_text(lim.rlim_cur),
                                   limit_text(lim.rlim_max)));
  }
  if (::personality(t.personality) < 0) return sys_error("personality");
  return {};
}

Status restore_mm(RestoreContext& ctx, int exe_fd) {
  const schema::TaskRecord& t = ctx.rec->task;
  // The kernel refuses a new exe link while the old exe file is mapped; when the image runs the
  // restorer's own program, the link is already right.
  struct stat mine, theirs;
  if (::stat("/proc/self/exe", &mine) == 0 && ::stat(t.exe.c_str(), &theirs) == 0 &&
      mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino)
    exe_fd = -1;
  const schema::MmLayout& l = t.mm;
  prctl_mm_map m{};
  m.start_code = l.start_code, m.end_code = l.end_code;
  m.start_data = l.start_data, m.end_data = l.end_data;
  m.start_brk = l.start_brk, m.brk = l.brk, m.start_stack = l.start_stack;
  m.arg_start = l.arg_start, m.arg_end = l.arg_end;
  m.env_start = l.env_start, m.env_end = l.env_end;
  m.auxv = reinterpret_cast<__u64*>(ctx.scratch.addr + sizeof(m));
  m.auxv_size = static_cast<uint32_t>(l.auxv.size());
  m.exe_fd = static_cast<uint32_t>(exe_fd);
  if (sizeof(m) + l.auxv.size() > ctx.scratch.size)
    return errorf("restore pid {}: auxv of {} bytes does not fit the scratch page", ctx.pid,
                  l.auxv.size());
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &m, sizeof(m)));
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr + sizeof(m), l.auxv.data(), l.auxv.size()));
  auto& rs = *ctx.main_remote;
  CKPT_TRY(rs.call("prctl(PR_SET_MM_MAP)", SYS_prctl,
                   {PR_SET_MM, PR_SET_MM_MAP, ctx.scratch.addr, sizeof(m)}));
  // Images that know it per thread have it set in each thread (settings.hpp): set here, it
  // would pass to threads that did not have it.
  if (t.no_new_privs && !ctx.rec->threads.at(0).settings.no_new_privs)
    CKPT_TRY(rs.call("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1}));
  return {};
}

// Runs in every thread (credentials are per thread), after everything that needs the restorer's
// privileges. Only root changes them: anyone else restores only images of their own ids.
Status restore_ids(RestoreContext& ctx, ptrace::RemoteSyscalls& rs) {
  const schema::Credentials& c = ctx.rec->task.creds;
  if (::geteuid() != 0) return {};
  if (c.groups.size() * sizeof(uint32_t) > ctx.scratch.size)
    return errorf("restore pid {}: {} supplementary groups do not fit the scratch page", ctx.pid,
                  c.groups.size());
  CKPT_TRY(
      write_remote(ctx.pid, ctx.scratch.addr, c.groups.data(), c.groups.size() * sizeof(uint32_t)));
  CKPT_TRY(rs.call("setgroups", SYS_setgroups, {c.groups.size(), ctx.scratch.addr}));
  CKPT_TRY(rs.call("setresgid", SYS_setresgid, {c.gid[0], c.gid[1], c.gid[2]}));
  CKPT_TRY(rs.call("setresuid", SYS_setresuid, {c.uid[0], c.uid[1], c.uid[2]}));
  // setres*id made the filesystem ids the effective ones; these calls return the old id.
  CKPT_TRY(rs.call("setfsgid", SYS_setfsgid, {c.gid[3]}));
  CKPT_TRY(rs.call("setfsuid", SYS_setfsuid, {c.uid[3]}));
  return {};
}

// Becoming another user resets the dumpable flag, so it is set after every thread's ids.
Status restore_dumpable(RestoreContext& ctx) {
  CKPT_TRY(ctx.main_remote->call("prctl(PR_SET_DUMPABLE)", SYS_prctl,
                                 {PR_SET_DUMPABLE, static_cast<uint64_t>(ctx.rec->task.dumpable)}));
  return {};
}

}  // namespace ckpt::process
