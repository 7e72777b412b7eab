// A thread in poll() on a pipe with a 20 s timeout; after restore it must return the readiness
// the main thread causes, not time out or fail.
#include <poll.h>
#include <pthread.h>

#include "e2e_prog.h"

static int p[2];
static int rc = -2, poll_errno;
static short revents;
static volatile int blocked;

static void* poller(void* arg) {
  (void)arg;
  struct pollfd pfd = {.fd = p[0], .events = POLLIN};
  blocked = 1;
  rc = poll(&pfd, 1, 20000);
  poll_errno = errno;
  revents = pfd.revents;
  return NULL;
}

int main(void) {
  e2e_setup();
  E2E_SYS(pipe(p));
  pthread_t th;
  e2e_thread(&th, poller, NULL);
  while (!blocked) sched_yield();
  e2e_ready();
  e2e_wait_go();
  E2E_CHECK(rc == -2, "poll returned early: %d (%s)", rc, strerror(poll_errno));
  double t0 = e2e_now();
  E2E_SYS(write(p[1], "x", 1));
  pthread_join(th, NULL);
  E2E_CHECK(rc == 1 && (revents & POLLIN), "poll returned %d revents %#x (%s)", rc, revents,
            strerror(poll_errno));
  E2E_CHECK(e2e_now() - t0 < 2, "poll woke up %.2f s after the write", e2e_now() - t0);
  return e2e_finish();
}
