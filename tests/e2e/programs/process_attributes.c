// Per-process attributes: cwd, umask, a changed soft rlimit, the name (PR_SET_NAME) and the
// personality.
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "e2e_prog.h"

int main(void) {
  e2e_setup();
  E2E_SYS(mkdir(e2e_path("work dir"), 0755));
  E2E_SYS(chdir(e2e_path("work dir")));
  char cwd[4096];
  E2E_SYS(getcwd(cwd, sizeof cwd) ? 0 : -1);
  umask(0027);
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  struct rlimit lowered = {.rlim_cur = 321, .rlim_max = nofile.rlim_max};
  E2E_SYS(setrlimit(RLIMIT_NOFILE, &lowered));
  struct rlimit core = {.rlim_cur = 0, .rlim_max = 4096 * 1024};
  E2E_SYS(setrlimit(RLIMIT_CORE, &core));
  E2E_SYS(prctl(PR_SET_NAME, "e2e-renamed"));
  int pers = personality(0xffffffff);
  E2E_SYS(personality((unsigned long)pers | UNAME26 | ADDR_NO_RANDOMIZE));
  int want_pers = pers | UNAME26 | ADDR_NO_RANDOMIZE;
  e2e_ready();
  e2e_wait_go();

  char now[4096];
  E2E_CHECK(getcwd(now, sizeof now) && strcmp(now, cwd) == 0, "cwd is %.200s, want %.200s", now,
            cwd);
  mode_t m = umask(0);
  E2E_CHECK(m == 0027, "umask %03o, want 027", (unsigned)m);
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  E2E_CHECK(r.rlim_cur == 321 && r.rlim_max == nofile.rlim_max, "RLIMIT_NOFILE %lu/%lu",
            (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
  getrlimit(RLIMIT_CORE, &r);
  E2E_CHECK(r.rlim_cur == 0 && r.rlim_max == 4096 * 1024, "RLIMIT_CORE %lu/%lu",
            (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
  char name[17] = {0};
  prctl(PR_GET_NAME, name);
  E2E_CHECK(strcmp(name, "e2e-renamed") == 0, "name is '%s'", name);
  int p = personality(0xffffffff);
  E2E_CHECK(p == want_pers, "personality %#x, want %#x", p, want_pers);
  return e2e_finish();
}
