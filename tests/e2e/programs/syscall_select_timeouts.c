// Threads blocked in select(), pselect6() and ppoll() with a 30 s timeout on pipes that stay
// empty until after the restore. Each wait must go on across dump and restore (no EINTR, no
// timeout) and return the readiness the main thread causes after the go; the remaining time the
// kernel writes back must be sensible: less than 30 s by at least the time spent waiting before
// READY (a timeout re-armed at 30 s by the restore would show more), and not less than 30 s
// minus the whole wall-clock time since the wait began. The raw system calls are used: the C
// library's wrappers may hide the remaining time.
#include <poll.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

#define TIMEOUT 30.0
#define WAIT_BEFORE_READY 0.4

enum { kSelect, kPselect, kPpoll, kWaiters };
static const char* const kNames[kWaiters] = {"select", "pselect6", "ppoll"};
static const long kSyscalls[kWaiters] = {SYS_select, SYS_pselect6, SYS_ppoll};

struct waiter {
  int kind;
  int pipe[2];
  volatile int tid;
  double began, returned;
  long rc;
  int err;
  double left;  // remaining timeout written back
};

static void* wait_thread(void* arg) {
  struct waiter* w = arg;
  int fd = w->pipe[0];
  fd_set set;
  FD_ZERO(&set);
  FD_SET(fd, &set);
  struct timeval tv = {(time_t)TIMEOUT, 0};
  struct timespec ts = {(time_t)TIMEOUT, 0};
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  w->began = e2e_now();
  w->tid = (int)syscall(SYS_gettid);
  if (w->kind == kSelect) {
    w->rc = syscall(SYS_select, fd + 1, &set, NULL, NULL, &tv);
    w->left = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  } else if (w->kind == kPselect) {
    w->rc = syscall(SYS_pselect6, fd + 1, &set, NULL, NULL, &ts, NULL);
    w->left = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  } else {
    w->rc = syscall(SYS_ppoll, &pfd, 1, &ts, NULL, (size_t)8);
    w->left = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  }
  w->err = w->rc < 0 ? errno : 0;
  w->returned = e2e_now();
  return NULL;
}

int main(void) {
  e2e_setup();
  struct waiter w[kWaiters];
  pthread_t th[kWaiters];
  memset(w, 0, sizeof w);
  for (int i = 0; i < kWaiters; ++i) {
    w[i].kind = i;
    E2E_SYS(pipe(w[i].pipe));
    e2e_thread(&th[i], wait_thread, &w[i]);
  }
  for (int i = 0; i < kWaiters; ++i)
    while (!w[i].tid || e2e_syscall_of(w[i].tid) != kSyscalls[i]) usleep(1000);
  // Time the waits spend before the dump, which a restored timeout has used up.
  struct timespec pause_ts = {0, (long)(WAIT_BEFORE_READY * 1e9)};
  nanosleep(&pause_ts, NULL);
  e2e_ready();
  e2e_wait_go();

  double go_at = e2e_now();
  for (int i = 0; i < kWaiters; ++i) {
    E2E_CHECK(w[i].returned == 0, "%s returned before the go: %ld (%s)", kNames[i], w[i].rc,
              strerror(w[i].err));
    E2E_SYS(write(w[i].pipe[1], "x", 1));
  }
  for (int i = 0; i < kWaiters; ++i) {
    pthread_join(th[i], NULL);
    const char* name = kNames[i];
    E2E_CHECK(w[i].rc == 1, "%s returned %ld (%s), want 1 ready descriptor", name, w[i].rc,
              w[i].rc < 0 ? strerror(w[i].err) : "no error");
    E2E_CHECK(w[i].returned >= go_at, "%s returned %.3f s before the pipe was written", name,
              go_at - w[i].returned);
    double waited = w[i].returned - w[i].began;
    E2E_CHECK(w[i].left <= TIMEOUT - WAIT_BEFORE_READY + 0.01,
              "%s has %.3f s of its %.0f s timeout left after %.3f s (%.1f s before READY): "
              "restarted with its whole timeout",
              name, w[i].left, TIMEOUT, waited, WAIT_BEFORE_READY);
    E2E_CHECK(w[i].left >= TIMEOUT - waited - 0.05 && w[i].left > 0,
              "%s has %.3f s of its %.0f s timeout left after %.3f s", name, w[i].left, TIMEOUT,
              waited);
  }
  return e2e_finish();
}
