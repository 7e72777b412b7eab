#include "supervisor/own_namespaces.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "common/log.hpp"
#include "common/scoped_fd.hpp"
#include "proc/pid_namespace.hpp"
#include "restore/spawn.hpp"
#include "restore/user_ns.hpp"
#include "supervisor/process.hpp"

namespace ckpt::supervisor {
namespace {

// The caller's /proc, kept from before ours was mounted: its fdinfo of a pidfd names the process
// by its PID out there.
int host_proc = -1;

constexpr int kPassedOn[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1};

// Our PID as the caller's PID namespace sees it: /proc/self before our own /proc is mounted.
pid_t own_pid_outside() {
  char buf[32] = {};
  ssize_t n = ::readlink("/proc/self", buf, sizeof buf - 1);
  return n > 0 ? static_cast<pid_t>(std::atoi(buf)) : 0;
}

// Waits for the supervisor, passing on what a process sends us (a terminal's signals reach the
// supervisor and the program themselves: those are not sent twice).
int wait_for(pid_t child, const sigset_t& set) {
  for (;;) {
    siginfo_t info{};
    int sig = ::sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (info.si_code == SI_USER || info.si_code == SI_QUEUE) ::kill(child, sig);
      continue;
    }
    int status = 0;
    pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child && WIFEXITED(status)) return WEXITSTATUS(status);
    if (r == child && WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  }
}

}  // namespace

int run_in_own_namespaces(const std::function<int(pid_t outer_pid)>& body) {
  if (Status st = user_ns::enter_own(); !st.ok()) {
    say(st.error().message);
    return 1;
  }
  sigset_t set, old;
  sigemptyset(&set);
  for (int sig : kPassedOn) sigaddset(&set, sig);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, &old);
  auto made = fork_into_new_pid_ns();
  if (!made.ok()) {
    say(made.error().wrap("the supervisor's PID namespace").message);
    return 1;
  }
  pid_t child = *made;
  if (child == 0) {
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    pid_t outer = own_pid_outside();
    host_proc = ::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (Status st = proc::mount_own_proc(); !st.ok()) {
      say(st.error().message);
      ::_exit(1);
    }
    log::info("supervisor",
              "no CAP_CHECKPOINT_RESTORE: running as PID 1 of a user and PID namespace of the "
              "run's own (pid {} outside)",
              outer);
    ::_exit(body(outer));
  }
  return wait_for(child, set);
}

bool in_own_namespaces() {
  return host_proc >= 0;
}

pid_t pid_outside(pid_t pid) {
  if (host_proc < 0 || pid <= 0) return pid;
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return pid;
  ScopedFd info(::openat(host_proc, fmt::format("self/fdinfo/{}", pidfd.get()).c_str(),
                         O_RDONLY | O_CLOEXEC));
  char buf[1024] = {};
  ssize_t n = info ? ::read(info.get(), buf, sizeof buf - 1) : -1;
  if (n <= 0) return pid;
  const char* line = std::strstr(buf, "\nPid:");
  return line ? static_cast<pid_t>(std::atoi(line + 5)) : pid;
}

}  // namespace ckpt::supervisor
