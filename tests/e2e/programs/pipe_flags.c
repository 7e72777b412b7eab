// Status flags belong to the open file, not to the pipe (issue 11, point 6): one pipe with two
// open files per end (the second opened through /proc/self/fd) and a dup of one of them. Each
// open file has its own O_NONBLOCK / O_ASYNC, owner and signal; after the restore each fd must
// show its own, the dup must still share its open file (kcmp), the others must not, and the
// O_ASYNC read end must still signal its owner, with its own signal and fd number, when data
// arrives.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

struct want {
  const char* name;
  int fd, flags, owner, sig;  // flags: O_NONBLOCK | O_ASYNC bits
};

static int same_file(int a, int b) {
  pid_t me = getpid();
  return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

static void check(const struct want* w, const char* when) {
  int fl = fcntl(w->fd, F_GETFL);
  E2E_CHECK(fl >= 0 && (fl & (O_NONBLOCK | O_ASYNC)) == w->flags,
            "%s %s (fd %d): flags 0x%x, want nonblock/async 0x%x", w->name, when, w->fd, fl,
            w->flags);
  int owner = fcntl(w->fd, F_GETOWN);
  E2E_CHECK(owner == w->owner, "%s %s: owner %d, want %d", w->name, when, owner, w->owner);
  int sig = fcntl(w->fd, F_GETSIG);
  E2E_CHECK(sig == w->sig, "%s %s: signal %d, want %d", w->name, when, sig, w->sig);
}

static void setup(const struct want* w) {
  int fl = fcntl(w->fd, F_GETFL);
  E2E_SYS(fl);
  E2E_SYS(fcntl(w->fd, F_SETFL, (fl & ~(O_NONBLOCK | O_ASYNC)) | w->flags));
  if (w->owner) E2E_SYS(fcntl(w->fd, F_SETOWN, w->owner));
  if (w->sig) E2E_SYS(fcntl(w->fd, F_SETSIG, w->sig));
}

static int reopen(int fd, int mode) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int out = open(path, mode);
  E2E_SYS(out);
  return out;
}

int main(void) {
  e2e_setup();
  int p[2];
  E2E_SYS(pipe(p));
  int r2 = reopen(p[0], O_RDONLY | O_NONBLOCK), w2 = reopen(p[1], O_WRONLY);
  int r1dup = dup(p[0]);
  E2E_SYS(r1dup);
  pid_t me = getpid();
  int rt = SIGRTMIN + 3;
  struct want wants[] = {
      {"read end 1", p[0], O_NONBLOCK, 0, 0},     {"read end 1's dup", r1dup, O_NONBLOCK, 0, 0},
      {"read end 2", r2, O_ASYNC, me, rt},        {"write end 1", p[1], O_ASYNC, me, 0},
      {"write end 2", w2, O_NONBLOCK, 0, SIGURG},
  };
  int n = (int)(sizeof wants / sizeof wants[0]);
  for (int i = 0; i < n; ++i)
    if (wants[i].fd != r1dup) setup(&wants[i]);
  sigset_t rtset;
  sigemptyset(&rtset);
  sigaddset(&rtset, rt);
  sigaddset(&rtset, SIGIO);
  sigprocmask(SIG_BLOCK, &rtset, NULL);
  for (int i = 0; i < n; ++i) check(&wants[i], "before");
  e2e_ready();
  e2e_wait_go();

  for (int i = 0; i < n; ++i) check(&wants[i], "after");
  E2E_CHECK(same_file(p[0], r1dup), "the dup of read end 1 is another open file now");
  E2E_CHECK(!same_file(p[0], r2), "the read ends share one open file now");
  E2E_CHECK(!same_file(p[1], w2), "the write ends share one open file now");
  // They are still ends of one pipe, and the O_ASYNC read end tells its owner about data.
  E2E_CHECK(write(w2, "x", 1) == 1, "write through write end 2: %s", strerror(errno));
  siginfo_t info;
  memset(&info, 0, sizeof info);
  struct timespec limit = {10, 0};
  sigset_t only_rt;
  sigemptyset(&only_rt);
  sigaddset(&only_rt, rt);
  int got = sigtimedwait(&only_rt, &info, &limit);
  E2E_CHECK(got == rt && info.si_fd == r2, "O_ASYNC read end: signal %d for fd %d, want %d for %d",
            got, info.si_fd, rt, r2);
  char c = 0;
  E2E_CHECK(read(p[0], &c, 1) == 1 && c == 'x', "read through read end 1: %s", strerror(errno));
  E2E_CHECK(read(p[0], &c, 1) < 0 && errno == EAGAIN, "read end 1 on an empty pipe: %s",
            strerror(errno));
  return e2e_finish();
}
