// A parent and child sharing something (argv[1]): "eventfd", "timerfd", "signalfd", "epoll",
// "inotify" or "fanotify" one such file description (the last two watching a directory of their
// own), "shm" an anonymous MAP_SHARED page, "memfd" a memfd page mapped shared, "zombie" a child
// that exited and is not reaped yet; or "pipe_lock": the child alone holds a flock on a pipe of
// its own, which ckpt refuses to dump (the parent only tells it to end). After READY and SIGUSR2
// (once restored) the parent checks the thing is still shared between the two processes (a status
// flag the parent sets on the fd is seen by the child; the zombie has its exit status) and prints
// PASS.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdbool.h>

#include "e2e_prog.h"

#define ZOMBIE_STATUS 5

static char read_byte(int fd) {
  char c = 0;
  return read(fd, &c, 1) == 1 ? c : 0;
}

static int shm_child(volatile char* page, int ctl) {
  if (read_byte(ctl) != 'g') return 2;
  if (page[2] != 'd') return 4;  // what the parent stored after the fork, before the dump
  if (page[1] != 'p') return 3;  // the parent's store is not visible: no longer shared
  page[0] = 'c';
  return 0;
}

// The shared fd of an fd mode, -1 for the others.
static int shared_fd(const char* mode) {
  if (strcmp(mode, "eventfd") == 0) return eventfd(0, 0);
  if (strcmp(mode, "timerfd") == 0) return timerfd_create(CLOCK_MONOTONIC, 0);
  if (strcmp(mode, "epoll") == 0) return epoll_create1(0);
  char dir[512];
  snprintf(dir, sizeof dir, "%s/watched", getenv("E2E_DIR"));
  if ((strcmp(mode, "inotify") == 0 || strcmp(mode, "fanotify") == 0) && mkdir(dir, 0755) < 0)
    return -1;
  if (strcmp(mode, "inotify") == 0) {
    int fd = inotify_init1(0);
    return fd >= 0 && inotify_add_watch(fd, dir, IN_CREATE) >= 0 ? fd : -1;
  }
  if (strcmp(mode, "fanotify") == 0) {
    int fd = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
    return fd >= 0 && fanotify_mark(fd, FAN_MARK_ADD, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD,
                                    AT_FDCWD, dir) == 0
               ? fd
               : -1;
  }
  if (strcmp(mode, "signalfd") == 0) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    return signalfd(-1, &set, 0);
  }
  return -1;
}

// The eventfd carries the parent's value; every fd shows the O_NONBLOCK the parent set on its
// own fd after the restore: one open file description, not two copies.
static int fd_child(const char* mode, int fd, int ctl) {
  if (read_byte(ctl) != 'g') return 2;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return 3;
  if (!(flags & O_NONBLOCK)) return 5;
  uint64_t v = 0;
  if (strcmp(mode, "eventfd") == 0 && (read(fd, &v, sizeof v) != (ssize_t)sizeof v || v != 3))
    return 4;
  return 0;
}

static int pipe_lock_child(int ctl) {
  int p[2];
  if (pipe(p) < 0 || flock(p[0], LOCK_EX) < 0) return 2;
  return read_byte(ctl) == 'g' ? 0 : 3;
}

int main(int argc, char** argv) {
  e2e_setup();
  const char* mode = argc > 1 ? argv[1] : "";
  int memfd = strcmp(mode, "memfd") == 0 ? memfd_create("tree-page", 0) : -1;
  if (memfd >= 0 && ftruncate(memfd, 4096) < 0) return 1;
  volatile char* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                             MAP_SHARED | (memfd >= 0 ? 0 : MAP_ANONYMOUS), memfd, 0);
  if (memfd >= 0) close(memfd);
  bool shm = strcmp(mode, "shm") == 0 || memfd >= 0;
  bool pipe_lock = strcmp(mode, "pipe_lock") == 0;
  if (page == MAP_FAILED) return 1;
  int fd = shared_fd(mode);
  int ctl[2];
  E2E_SYS(pipe(ctl));
  pid_t c = fork();
  E2E_SYS(c);
  if (c == 0) {
    close(ctl[1]);
    if (shm) _exit(shm_child(page, ctl[0]));
    if (pipe_lock) _exit(pipe_lock_child(ctl[0]));
    if (fd >= 0) _exit(fd_child(mode, fd, ctl[0]));
    _exit(ZOMBIE_STATUS);
  }
  close(ctl[0]);
  // Each mode shares only its own thing: the others must not be what the dump trips on.
  if (!shm) munmap((void*)page, 4096);
  if (shm) page[2] = 'd';
  if (strcmp(mode, "zombie") == 0) {
    siginfo_t si;
    E2E_SYS(waitid(P_PID, (id_t)c, &si, WEXITED | WNOWAIT));  // a zombie, not reaped
  }
  e2e_ready();
  e2e_wait_go();
  int st = 0;
  if (shm) {
    page[1] = 'p';
    E2E_CHECK(write(ctl[1], "g", 1) == 1, "wake the child: %s", strerror(errno));
    E2E_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the child ended with status 0x%x", st);
    E2E_CHECK(page[0] == 'c', "the child's store to the shared page is not visible");
  } else if (pipe_lock) {
    E2E_CHECK(write(ctl[1], "g", 1) == 1, "wake the child: %s", strerror(errno));
    E2E_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the child ended with status 0x%x", st);
  } else if (fd >= 0) {
    uint64_t v = 3;
    E2E_SYS(fcntl(fd, F_SETFL, O_NONBLOCK));
    if (strcmp(mode, "eventfd") == 0)
      E2E_CHECK(write(fd, &v, sizeof v) == (ssize_t)sizeof v, "eventfd write: %s", strerror(errno));
    E2E_CHECK(write(ctl[1], "g", 1) == 1, "wake the child: %s", strerror(errno));
    E2E_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the child ended with status 0x%x", st);
  } else {
    E2E_CHECK(waitpid(c, &st, WNOHANG) == c && WIFEXITED(st) && WEXITSTATUS(st) == ZOMBIE_STATUS,
              "the zombie child's status is 0x%x, want exit %d", st, ZOMBIE_STATUS);
  }
  return e2e_finish();
}
