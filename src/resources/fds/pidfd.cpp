// pidfd (pidfd_open, clone CLONE_PIDFD): the process it names, from fdinfo's "Pid:" line.
//
// A pidfd of a process of the dumped tree (a child, a zombie child, the holder itself) names the
// same process after the restore, which gives every process its PID back: it is opened once
// every restored process exists (FdKind::opened_after_tree) and each holder takes that one open
// file while it is built. A pidfd of a process gone (Pid -1) is made from a child of the restorer
// that ends as the original did (when the kernel kept its exit status) and is reaped at once.
// Refused, naming them: a pidfd of a process outside the tree (after a restore the PID would
// name another process, or none), of one in another PID namespace, of a thread other than a
// leader (made by its process's build, after the late descriptors are in place). A pidfd in
// flight in a unix socket is refused by the unix kind.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "proc/status.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

constexpr uint32_t kThreadFlag = O_EXCL;  // PIDFD_THREAD (Linux 6.9)

// struct pidfd_info of linux/pidfd.h (PIDFD_GET_INFO, Linux 6.13; exit_code since 6.15), which
// Debian 12's kernel headers lack.
struct PidfdInfo {
  uint64_t mask = 0;
  uint64_t cgroupid = 0;
  uint32_t ids[11] = {};  // pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid
  int32_t exit_code = 0;  // a wait status
};
static_assert(sizeof(PidfdInfo) == 64);
constexpr uint64_t kInfoExit = 1u << 3;
constexpr unsigned long kGetInfo = _IOWR(0xFF, 11, PidfdInfo);

struct PidfdPayload {
  int32_t pid = 0;  // the process (or thread leader) it names; -1: gone
  bool thread = false;
  // The wait status of a process gone, when the kernel kept it.
  std::optional<int32_t> exit_status;
  template <class V>
  void visit(V& v) {
    v("pid", pid), v("thread", thread), v("exit_status", exit_status);
  }
};

std::optional<int32_t> exit_status_of(FdProbe& p) {
  auto fd = p.borrowed();
  if (!fd.ok()) return std::nullopt;
  PidfdInfo info;
  info.mask = kInfoExit;
  if (::ioctl(*fd, kGetInfo, &info) < 0 || !(info.mask & kInfoExit)) return std::nullopt;
  return info.exit_code;
}

// A child of ours that ends with `status` (a wait status; exit 0 without one).
[[noreturn]] void end_as(std::optional<int32_t> status) {
  // A signal that would dump core must not write a core file.
  ::prctl(PR_SET_DUMPABLE, 0);
  if (status && WIFSIGNALED(*status)) {
    int sig = WTERMSIG(*status);
    ::signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    ::sigprocmask(SIG_UNBLOCK, &one, nullptr);
    ::kill(::getpid(), sig);
  }
  ::_exit(status && WIFEXITED(*status) ? WEXITSTATUS(*status) : 0);
}

// A pidfd of a process that has ended and been reaped.
Result<ScopedFd> pidfd_of_one_gone(const PidfdPayload& d, const schema::OpenFile& of) {
  pid_t child = ::fork();
  if (child < 0) return sys_error(fmt::format("fork for the pidfd of open file {}", of.id));
  if (child == 0) end_as(d.exit_status);
  ScopedFd fd(static_cast<int>(::syscall(SYS_pidfd_open, child, d.thread ? kThreadFlag : 0)));
  int saved = errno;
  while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (!fd) return Error{saved, fmt::format("pidfd_open of a child for open file {}", of.id)};
  return fd;
}

class PidfdKind final : public FdKind {
 public:
  std::string_view name() const override { return "pidfd"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:[pidfd]";
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    if (!p.info.pidfd_pid)
      return errorf("pid {}: fd {} is a pidfd whose fdinfo names no process", p.pid, p.fd);
    PidfdPayload d;
    d.pid = *p.info.pidfd_pid;
    d.thread = (p.info.flags & kThreadFlag) != 0;
    if (d.pid == 0)
      return errorf(
          "pid {}: fd {} is a pidfd of a process in another PID namespace, which ckpt cannot save",
          p.pid, p.fd);
    if (d.pid > 0 && d.thread) {
      auto st = proc::read_status(d.pid);
      if (st.ok() && st->tgid != d.pid)
        return errorf("pid {}: fd {} is a pidfd of thread {} of pid {}, which ckpt cannot save yet",
                      p.pid, p.fd, d.pid, st->tgid);
    }
    if (d.pid < 0) d.exit_status = exit_status_of(p);
    of.owner.reset();  // a pidfd sends no signals (it has no O_ASYNC)
    of.payload = schema::encode(d);
    return {};
  }
  Status link(const LinkEnv& env, const std::vector<LinkedFile>& files) const override {
    auto in_tree = [&](pid_t pid) {
      return std::find(env.pids.begin(), env.pids.end(), pid) != env.pids.end();
    };
    for (auto& f : files) {
      CKPT_TRY_ASSIGN(PidfdPayload d, payload_of<PidfdPayload>(*f.file));
      if (d.pid < 0 || f.holders.empty()) continue;
      Holder h = f.holders.front();
      if (!in_tree(d.pid))
        return errorf(
            "pid {}: fd {} is a pidfd of pid {}, outside the dumped tree: after a restore that "
            "PID would name another process or none (dump that process's tree, or close the fd)",
            h.pid, h.fd, d.pid);
    }
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(PidfdPayload d, payload_of<PidfdPayload>(*of));
      if (d.pid > 0) continue;  // opened_after_tree
      CKPT_TRY_ASSIGN(ScopedFd fd, pidfd_of_one_gone(d, *of));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "pidfd"));
      out[of->id] = std::move(fd);
    }
    return {};
  }
  bool opened_after_tree(const schema::OpenFile& of) const override {
    auto d = payload_of<PidfdPayload>(of);
    return d.ok() && d->pid > 0;
  }
  Result<ScopedFd> open_after_tree(const schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(PidfdPayload d, payload_of<PidfdPayload>(of));
    ScopedFd fd(static_cast<int>(::syscall(SYS_pidfd_open, d.pid, d.thread ? kThreadFlag : 0)));
    if (!fd) return sys_error(fmt::format("pidfd_open({}) for open file {}", d.pid, of.id));
    CKPT_TRY(set_status_flags(fd.get(), of.flags, "pidfd"));
    return fd;
  }
};

}  // namespace

const FdKind& pidfd_kind() {
  static const PidfdKind kind;
  return kind;
}

}  // namespace ckpt::fds
