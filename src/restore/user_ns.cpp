#include "restore/user_ns.hpp"

#include <linux/capability.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include <fmt/format.h>

#include "proc/proc_file.hpp"

namespace ckpt::user_ns {
namespace {

bool has_effective(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) < 0) return false;
  return (data[cap / 32].effective >> (cap % 32)) & 1;
}

}  // namespace

bool restore_needs_own_namespace() {
  return !has_effective(CAP_CHECKPOINT_RESTORE) && !has_effective(CAP_SYS_ADMIN);
}

Status enter_own() {
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  if (::unshare(CLONE_NEWUSER) < 0)
    return sys_error(
        "restore without privileges: unshare(CLONE_NEWUSER) for a user namespace of your own "
        "(are user namespaces enabled? /proc/sys/user/max_user_namespaces)");
  CKPT_TRY(proc::write_proc_text("/proc/self/setgroups", "deny"));
  CKPT_TRY(proc::write_proc_text("/proc/self/uid_map", fmt::format("{} {} 1", uid, uid)));
  CKPT_TRY(proc::write_proc_text("/proc/self/gid_map", fmt::format("{} {} 1", gid, gid)));
  return {};
}

}  // namespace ckpt::user_ns
