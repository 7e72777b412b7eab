// A thread blocked in read() on a pipe whose both ends are in the process; after restore the
// read must still be waiting and return what the main thread writes.
#include <pthread.h>

#include "e2e_prog.h"

static int p[2];
static char got[64];
static ssize_t got_len = -2;
static int got_errno;
static volatile int blocked;

static void* reader(void* arg) {
  (void)arg;
  blocked = 1;
  got_len = read(p[0], got, sizeof got);
  got_errno = errno;
  return NULL;
}

int main(void) {
  e2e_setup();
  E2E_SYS(pipe(p));
  pthread_t th;
  e2e_thread(&th, reader, NULL);
  while (!blocked) sched_yield();
  e2e_ready();
  e2e_wait_go();
  E2E_CHECK(got_len == -2, "read returned early: %zd (%s)", got_len, strerror(got_errno));
  E2E_SYS(write(p[1], "after restore", 13));
  pthread_join(th, NULL);
  E2E_CHECK(got_len == 13 && memcmp(got, "after restore", 13) == 0, "read returned %zd (%s)",
            got_len, got_len < 0 ? strerror(got_errno) : "wrong data");
  return e2e_finish();
}
