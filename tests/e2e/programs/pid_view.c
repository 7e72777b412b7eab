// A process and its child that check what they see of their own PIDs: getpid() as before the
// dump, /proc/self is that PID, the child's parent is the process. Restored in a new
// PID namespace (`ckpt restore --pid-ns`) they must see all of it as before.
#include <sys/wait.h>

#include "e2e_prog.h"

// /proc/self names our own PID: the /proc we see is of our own PID namespace (one of the host
// would name our PID there, another number).
static int proc_is_ours(void) {
  char link[32] = {0};
  if (readlink("/proc/self", link, sizeof link - 1) <= 0) return 0;
  return atoi(link) == getpid();
}

static void check_self(pid_t want, pid_t parent) {
  E2E_CHECK(getpid() == want, "getpid() changed");
  E2E_CHECK(proc_is_ours(), "/proc/self is not getpid()");
  if (parent > 0) E2E_CHECK(getppid() == parent, "the parent changed");
}

int main(void) {
  e2e_setup();
  pid_t me = getpid();
  int ready[2];
  E2E_SYS(pipe(ready));
  pid_t kid = fork();
  E2E_SYS(kid);
  if (kid == 0) {
    pid_t mine = getpid();
    close(ready[0]);
    (void)!write(ready[1], "r", 1);
    e2e_wait_go();
    check_self(mine, me);
    _exit(e2e_failures == 0 ? 0 : 1);
  }
  close(ready[1]);
  char c;
  E2E_CHECK(read(ready[0], &c, 1) == 1, "the child did not start");
  e2e_ready();
  e2e_wait_go();
  check_self(me, 0);
  kill(kid, SIGUSR2);
  int status = 0;
  E2E_CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the child's checks failed");
  return e2e_finish();
}
