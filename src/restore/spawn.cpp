#include "restore/spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/scoped_fd.hpp"

namespace ckpt {
namespace {

using tree::GroupStep;
using tree::SessionStep;

struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

// -1 with errno on failure, like the system call.
long raw_clone(pid_t want, uint64_t flags) {
  CloneArgs args{};
  args.flags = flags;
  // With CLONE_PARENT the kernel gives the child the caller's own exit signal.
  args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  return ::syscall(SYS_clone3, &args, sizeof(args));
}

struct Helper {
  pid_t id;
  bool session;  // else a group
};

// A helper reports through its exit status: the errno of what failed, with 0x80 when it was
// creating the next process rather than making its session or group.
constexpr int kCloneFailed = 0x80;

// In the first helper: makes each session or group in turn; returns only in the new process.
void run_helpers(const std::vector<Helper>& helpers, pid_t pid, const SpawnOptions& opts,
                 const sigset_t& mask) {
  for (size_t k = 0;; ++k) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (opts.close_in_helpers >= 0) ::close(opts.close_in_helpers);
    if ((helpers[k].session ? ::setsid() : ::setpgid(0, 0)) < 0) ::_exit(errno & 0x7f);
    pid_t next = k + 1 < helpers.size() ? helpers[k + 1].id : pid;
    long r = raw_clone(next, CLONE_PARENT);
    if (r < 0) ::_exit(kCloneFailed | (errno & 0x7f));
    if (r > 0) ::_exit(0);
    if (k + 1 == helpers.size()) {
      ::sigprocmask(SIG_SETMASK, &mask, nullptr);
      return;
    }
  }
}

std::string helper_failure(const Helper& h, pid_t next, int status) {
  std::string what = fmt::format("the helper with pid {} for {} {}", h.id,
                                 h.session ? "session" : "process group", h.id);
  if (WIFSIGNALED(status)) return fmt::format("{} was killed by signal {}", what, WTERMSIG(status));
  int code = WEXITSTATUS(status);
  int err = code & 0x7f;
  if (!(code & kCloneFailed))
    return fmt::format("{}: {}: {}", what, h.session ? "setsid" : "setpgid", std::strerror(err));
  if (err == EEXIST) return fmt::format("{}: pid {} is in use by another process", what, next);
  return fmt::format("{}: clone3 with pid {}: {}", what, next, std::strerror(err));
}

// Each helper is the caller's child (the later ones through CLONE_PARENT); one that an earlier
// helper did not get to create does not exist.
Status reap_helpers(const std::vector<Helper>& helpers, pid_t pid) {
  std::string failure;
  for (size_t k = 0; k < helpers.size(); ++k) {
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(helpers[k].id, &status, __WALL)) < 0 && errno == EINTR) {
    }
    if (r < 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 0) || !failure.empty()) continue;
    failure = helper_failure(helpers[k], k + 1 < helpers.size() ? helpers[k + 1].id : pid, status);
  }
  if (!failure.empty()) return errorf("restore pid {}: {}", pid, failure);
  return {};
}

void drain_sigchld() {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  timespec now{0, 0};
  while (::sigtimedwait(&chld, nullptr, &now) == SIGCHLD) {
  }
}

}  // namespace

Result<pid_t> clone_with_pid(pid_t want, uint64_t flags) {
  long r = raw_clone(want, flags);
  if (r < 0) {
    if (errno == EEXIST) return errorf("restore: pid {} is in use by another process", want);
    if (errno == EPERM)
      return errorf("restore: creating pid {} needs CAP_CHECKPOINT_RESTORE", want);
    return sys_error(fmt::format("clone3 with pid {}", want));
  }
  return static_cast<pid_t>(r);
}

Result<pid_t> fork_into_new_pid_ns() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd rd(p[0]), wr(p[1]);
  pid_t helper = ::fork();
  if (helper < 0) return sys_error("fork");
  if (helper == 0) {
    rd.reset();
    long r = -1;
    if (::unshare(CLONE_NEWPID) == 0) {
      CloneArgs args{};
      args.flags = CLONE_PARENT;  // the kernel gives it our exit signal, SIGCHLD
      r = ::syscall(SYS_clone3, &args, sizeof(args));
      if (r == 0) {
        wr.reset();
        return 0;
      }
    }
    int answer = r > 0 ? static_cast<int>(r) : -errno;
    (void)!::write(wr.get(), &answer, sizeof answer);
    ::_exit(0);
  }
  wr.reset();
  int answer = 0;
  ssize_t n;
  while ((n = ::read(rd.get(), &answer, sizeof answer)) < 0 && errno == EINTR) {
  }
  rd.reset();
  while (::waitpid(helper, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof answer) return make_error("fork into a new PID namespace: the helper died");
  if (answer < 0) return sys_error(-answer, "unshare(CLONE_NEWPID) and clone3 into it");
  return static_cast<pid_t>(answer);
}

Result<pid_t> spawn_with_helpers(pid_t pid, const tree::TreePlan& t, const SpawnOptions& opts) {
  std::vector<Helper> helpers;
  if (opts.helpers && t.session == SessionStep::helper) helpers.push_back({t.sid, true});
  if (opts.helpers && t.group == GroupStep::helper) helpers.push_back({t.pgid, false});
  if (helpers.empty()) return clone_with_pid(pid);
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, opts.drop_sigchld ? &chld : nullptr, &old);
  auto first = clone_with_pid(helpers[0].id);
  if (first.ok() && *first == 0) {
    run_helpers(helpers, pid, opts, old);
    return 0;
  }
  Status st = first.ok() ? reap_helpers(helpers, pid) : Status(first.error());
  if (opts.drop_sigchld) drain_sigchld();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!st.ok()) return st.error();
  return pid;
}

}  // namespace ckpt
