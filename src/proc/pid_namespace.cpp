#include "proc/pid_namespace.hpp"

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <string>

namespace ckpt::proc {

size_t pid_ns_depth(const ProcStatus& status) {
  return status.ns_tgid.empty() ? 1 : status.ns_tgid.size();
}

Result<size_t> own_pid_ns_depth() {
  CKPT_TRY_ASSIGN(auto me, read_status(::getpid()));
  return pid_ns_depth(me);
}

bool is_child_ns_init(const ProcStatus& status, size_t own_depth) {
  return pid_ns_depth(status) == own_depth + 1 && status.ns_tgid.back() == 1;
}

Status mount_own_proc() {
  if (::unshare(CLONE_NEWNS) < 0) return sys_error("unshare(CLONE_NEWNS)");
  // Private first: the new /proc must not appear in the caller's mount namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
    return sys_error("make the mounts private (mount MS_REC|MS_PRIVATE /)");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    return sys_error("mount a /proc of the PID namespace");
  return {};
}

bool proc_shows_own_ns() {
  char buf[32];
  ssize_t n = ::readlink("/proc/self", buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  return std::to_string(::getpid()) == buf;
}

}  // namespace ckpt::proc
