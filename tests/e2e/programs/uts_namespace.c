// A process in a UTS namespace of its own (as `unshare -u` or a container makes one), with a
// hostname and domain name of its own, and a child forked into it. After the restore both are
// still in one namespace that is not their caller's, with those names, and a hostname set
// afterwards reaches the child but not the machine.
#include <sched.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "e2e_prog.h"

int main(void) {
  e2e_setup();
  char caller[64];
  e2e_ns_link(getppid(), "uts", caller, sizeof caller);
  E2E_SYS(unshare(CLONE_NEWUTS));
  E2E_SYS(sethostname("ckpt-e2e-uts", 12));
  E2E_SYS(setdomainname("ckpt.example", 12));
  int release;
  pid_t child = e2e_fork_held(&release);
  if (child == 0) {
    struct utsname u;
    _exit(uname(&u) == 0 && strcmp(u.nodename, "changed-after") == 0 ? 0 : 1);
  }
  e2e_ready();
  e2e_wait_go();

  struct utsname u;
  E2E_SYS(uname(&u));
  E2E_CHECK(strcmp(u.nodename, "ckpt-e2e-uts") == 0, "hostname '%s'", u.nodename);
  E2E_CHECK(strcmp(u.domainname, "ckpt.example") == 0, "domain name '%s'", u.domainname);
  char mine[64], theirs[64], now_caller[64];
  e2e_ns_link(getpid(), "uts", mine, sizeof mine);
  e2e_ns_link(child, "uts", theirs, sizeof theirs);
  e2e_ns_link(getppid(), "uts", now_caller, sizeof now_caller);
  E2E_CHECK(strcmp(mine, theirs) == 0, "the child is in %s, the process in %s", theirs, mine);
  E2E_CHECK(strcmp(mine, now_caller) != 0 && strcmp(mine, caller) != 0,
            "the process is in its caller's UTS namespace %s", mine);
  E2E_SYS(sethostname("changed-after", 13));
  E2E_SYS(write(release, "g", 1));
  int st = -1;
  E2E_CHECK(waitpid(child, &st, 0) == child && st == 0, "the child saw another hostname (0x%x)",
            st);
  return e2e_finish();
}
