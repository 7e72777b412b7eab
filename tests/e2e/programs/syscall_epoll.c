// A thread in epoll_wait() on an epoll instance watching a pipe; after restore the epoll fd must
// still watch the pipe and the wait must return the event.
#include <pthread.h>
#include <sys/epoll.h>

#include "e2e_prog.h"

static int p[2], ep;
static int rc = -2, wait_errno;
static struct epoll_event got;
static volatile int blocked;

static void* waiter(void* arg) {
  (void)arg;
  blocked = 1;
  rc = epoll_wait(ep, &got, 1, 20000);
  wait_errno = errno;
  return NULL;
}

int main(void) {
  e2e_setup();
  E2E_SYS(pipe(p));
  E2E_SYS(ep = epoll_create1(EPOLL_CLOEXEC));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234567890ull};
  E2E_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
  pthread_t th;
  e2e_thread(&th, waiter, NULL);
  while (!blocked) sched_yield();
  e2e_ready();
  e2e_wait_go();
  E2E_CHECK(rc == -2, "epoll_wait returned early: %d (%s)", rc, strerror(wait_errno));
  E2E_SYS(write(p[1], "x", 1));
  pthread_join(th, NULL);
  E2E_CHECK(rc == 1 && (got.events & EPOLLIN) && got.data.u64 == 0x1234567890ull,
            "epoll_wait returned %d events %#x data %#llx (%s)", rc, got.events,
            (unsigned long long)got.data.u64, strerror(wait_errno));
  return e2e_finish();
}
