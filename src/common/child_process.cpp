#include "common/child_process.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>

namespace ckpt {

int wait_end(pid_t pid) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, __WALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (WIFEXITED(status) || WIFSIGNALED(status)) return status;
  }
}

void kill_and_wait(pid_t pid) {
  if (pid <= 0) return;  // never a process group, never every process
  ::kill(pid, SIGKILL);
  (void)wait_end(pid);
}

}  // namespace ckpt
