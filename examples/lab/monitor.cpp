#include "monitor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace ckpt::lab {
namespace {

// Starts the worker; returns its pid, or -1 after printing why exec failed. The close-on-exec
// pipe carries exec's errno back, so "cannot start" is not mistaken for a crash.
pid_t spawn(const std::string& path, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    std::perror("monitor: pipe");
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("monitor: fork");
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    // The worker must not outlive its monitor, or it would keep reading the terminal.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // Only stdio: a descriptor leaked to us by whoever started the monitor would be the
    // worker's too, and the checkpoint engine refuses pipes that lead outside the process.
    close_range(3, static_cast<unsigned>(fds[1]) - 1, 0);
    close_range(static_cast<unsigned>(fds[1]) + 1, ~0U, 0);
    execv(path.c_str(), argv.data());
    int err = errno;
    (void)!write(fds[1], &err, sizeof err);
    _exit(127);
  }
  close(fds[1]);
  int err = 0;
  ssize_t n;
  do n = read(fds[0], &err, sizeof err);
  while (n < 0 && errno == EINTR);
  close(fds[0]);
  if (n == sizeof err) {
    std::fprintf(stderr, "monitor: cannot start %s: %s\n", path.c_str(), std::strerror(err));
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

// Waits for `pid`, sending it SIGUSR1 every `every_ms` milliseconds (0: never); returns its wait
// status. A pidfd tells when it ends without polling it.
int wait_for(pid_t pid, long every_ms) {
  int status = 0;
  if (every_ms > 0) {
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
      std::perror("monitor: pidfd_open");
      return -1;
    }
    auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(every_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          next - std::chrono::steady_clock::now());
      pollfd p{pidfd, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(std::max<long>(0, left.count())));
      if (n > 0) break;
      if (n < 0 && errno != EINTR) {
        std::perror("monitor: poll");
        break;
      }
      if (std::chrono::steady_clock::now() >= next) {
        kill(pid, SIGUSR1);
        next += std::chrono::milliseconds(every_ms);
      }
    }
    close(pidfd);
  }
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::perror("monitor: waitpid");
      return -1;
    }
  }
  return status;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "stopped unexpectedly";
}

}  // namespace

std::string find_worker() {
  if (const char* w = std::getenv("CKPT_LAB_WORKER"); w && *w) return w;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "lab-worker";
  return (self.parent_path() / "lab-worker").string();
}

int run_monitor(const MonitorConfig& config) {
  const std::vector<std::string>* args = &config.first_args;
  int quick_crashes = 0;
  for (;;) {
    auto started = std::chrono::steady_clock::now();
    pid_t pid = -1;
    if (args == &config.restart_args && config.restore) pid = config.restore();
    if (pid < 0) pid = spawn(config.worker, *args);
    if (pid < 0) return 1;
    int status = wait_for(pid, config.sigusr1_every_ms);
    if (status < 0) return 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    bool quick = std::chrono::steady_clock::now() - started < std::chrono::seconds(1);
    quick_crashes = quick ? quick_crashes + 1 : 0;
    if (quick_crashes >= config.max_quick_crashes) {
      std::fprintf(stderr, "monitor: worker %d %s; %d quick crashes in a row, giving up\n", pid,
                   describe(status).c_str(), quick_crashes);
      return 1;
    }
    std::fprintf(stderr, "monitor: worker %d %s; restarting\n", pid, describe(status).c_str());
    args = &config.restart_args;
  }
}

}  // namespace ckpt::lab
