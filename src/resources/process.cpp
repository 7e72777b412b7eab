#include "resources/process.hpp"

#include <linux/prctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/fs_util.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"

namespace ckpt::process {
namespace {

constexpr int kRlimits = RLIM_NLIMITS;

struct MmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end;
  uint64_t auxv;
  uint32_t auxv_size;
  uint32_t exe_fd;
};

Result<json> dump_layout(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(proc::ProcStat st, proc::read_stat(ctx.pid));
  json j{{"start_code", st.start_code}, {"end_code", st.end_code},
         {"start_data", st.start_data}, {"end_data", st.end_data},
         {"start_brk", st.start_brk},   {"start_stack", st.start_stack},
         {"arg_start", st.arg_start},   {"arg_end", st.arg_end},
         {"env_start", st.env_start},   {"env_end", st.env_end}};
  CKPT_TRY_ASSIGN(std::string auxv, proc::read_proc_file(ctx.pid, "auxv"));
  j["auxv"] = std::vector<uint8_t>(auxv.begin(), auxv.end());
  CKPT_TRY(ctx.with_remote(0, 64, [&](ptrace::RemoteSyscalls& rs, RemoteScratch) -> Status {
    CKPT_TRY_ASSIGN(long brk, rs.call("brk", SYS_brk, {0}));
    j["brk"] = static_cast<uint64_t>(brk);
    CKPT_TRY_ASSIGN(long dumpable, rs.call("prctl(PR_GET_DUMPABLE)", SYS_prctl, {PR_GET_DUMPABLE}));
    j["dumpable"] = dumpable;
    return {};
  }));
  return j;
}

}  // namespace

Status dump(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(json j, dump_layout(ctx));
  CKPT_TRY_ASSIGN(proc::ProcStatus status, proc::read_status(ctx.pid));
  j["uid"] = status.uid;
  j["gid"] = status.gid;
  j["groups"] = status.groups;
  j["no_new_privs"] = status.no_new_privs;
  j["umask"] = status.umask.value_or(022);
  CKPT_TRY_ASSIGN(j["exe"], proc::read_proc_link(ctx.pid, "exe"));
  CKPT_TRY_ASSIGN(j["cwd"], proc::read_proc_link(ctx.pid, "cwd"));
  CKPT_TRY_ASSIGN(j["root"], proc::read_proc_link(ctx.pid, "root"));
  CKPT_TRY_ASSIGN(std::string pers, proc::read_proc_file(ctx.pid, "personality"));
  j["personality"] = std::stoul(pers, nullptr, 16);
  json limits = json::array();
  for (int r = 0; r < kRlimits; ++r) {
    rlimit lim;
    if (::prlimit(ctx.pid, static_cast<__rlimit_resource>(r), nullptr, &lim) < 0)
      return sys_error(fmt::format("prlimit pid {} resource {}", ctx.pid, r));
    limits.push_back({lim.rlim_cur, lim.rlim_max});
  }
  j["rlimits"] = limits;
  ctx.image["process"] = std::move(j);
  return {};
}

Status check_before_restore(const json& image) {
  const json& p = image["process"];
  auto uid = p["uid"].get<std::vector<uint32_t>>();
  auto gid = p["gid"].get<std::vector<uint32_t>>();
  if (::geteuid() == 0) return {};
  uid_t me = ::geteuid();
  gid_t my_gid = ::getegid();
  for (auto u : uid)
    if (u != me) return errorf("the image belongs to uid {}; only root may restore it", u);
  for (auto g : gid)
    if (g != my_gid) return errorf("the image has gid {}; only root may restore it", g);
  return {};
}

Status restore_in_puppet(const json& image) {
  const json& p = image["process"];
  std::string cwd = p["cwd"];
  if (::chdir(cwd.c_str()) < 0) return sys_error(fmt::format("chdir {}", cwd));
  // Last of the path lookups in the puppet: its files are already open, from ckpt's own root.
  std::string root = p.value("root", "/");
  if (root != "/" && ::chroot(root.c_str()) < 0) return sys_error(fmt::format("chroot {}", root));
  ::umask(p["umask"].get<mode_t>());
  const json& limits = p["rlimits"];
  for (int r = 0; r < static_cast<int>(limits.size()); ++r) {
    rlimit lim{limits[r][0], limits[r][1]};
    if (::setrlimit(static_cast<__rlimit_resource>(r), &lim) < 0)
      return sys_error(
          fmt::format("setrlimit resource {} to {}/{}", r, lim.rlim_cur, lim.rlim_max));
  }
  if (::personality(p["personality"].get<unsigned long>()) < 0) return sys_error("personality");
  return {};
}

Status restore_mm(RestoreContext& ctx, int exe_fd) {
  const json& p = (*ctx.image)["process"];
  // The kernel refuses a new exe link while the old exe file is mapped; when the image runs the
  // restorer's own program, the link is already right.
  struct stat mine, theirs;
  std::string exe = p["exe"];
  if (::stat("/proc/self/exe", &mine) == 0 && ::stat(exe.c_str(), &theirs) == 0 &&
      mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino)
    exe_fd = -1;
  auto auxv = p["auxv"].get<std::vector<uint8_t>>();
  MmMap m{p["start_code"],
          p["end_code"],
          p["start_data"],
          p["end_data"],
          p["start_brk"],
          p["brk"],
          p["start_stack"],
          p["arg_start"],
          p["arg_end"],
          p["env_start"],
          p["env_end"],
          ctx.scratch.addr + sizeof(MmMap),
          static_cast<uint32_t>(auxv.size()),
          static_cast<uint32_t>(exe_fd)};
  CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, &m, sizeof(m)));
  CKPT_TRY(write_remote(ctx.pid, m.auxv, auxv.data(), auxv.size()));
  auto& rs = *ctx.main_remote;
  CKPT_TRY(rs.call("prctl(PR_SET_MM_MAP)", SYS_prctl,
                   {PR_SET_MM, PR_SET_MM_MAP, ctx.scratch.addr, sizeof(m)}));
  if (p["no_new_privs"].get<int>())
    CKPT_TRY(rs.call("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1}));
  return {};
}

// Runs after everything that needs the restorer's privileges. Becoming another user resets the
// dumpable flag, so it is set after.
Status restore_credentials(RestoreContext& ctx) {
  const json& p = (*ctx.image)["process"];
  auto& rs = *ctx.main_remote;
  auto uid = p["uid"].get<std::vector<uint32_t>>();
  auto gid = p["gid"].get<std::vector<uint32_t>>();
  auto groups = p["groups"].get<std::vector<uint32_t>>();
  if (::geteuid() == 0) {
    CKPT_TRY(
        write_remote(ctx.pid, ctx.scratch.addr, groups.data(), groups.size() * sizeof(uint32_t)));
    CKPT_TRY(rs.call("setgroups", SYS_setgroups, {groups.size(), ctx.scratch.addr}));
    CKPT_TRY(rs.call("setresgid", SYS_setresgid, {gid[0], gid[1], gid[2]}));
    CKPT_TRY(rs.call("setresuid", SYS_setresuid, {uid[0], uid[1], uid[2]}));
  }
  CKPT_TRY(rs.call("prctl(PR_SET_DUMPABLE)", SYS_prctl, {PR_SET_DUMPABLE, p["dumpable"]}));
  return {};
}

}  // namespace ckpt::process
