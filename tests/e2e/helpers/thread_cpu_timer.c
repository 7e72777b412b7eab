// A second thread and a POSIX timer on the CPU time of the thread that created it: /proc does
// not say which thread that is, so ckpt must refuse to dump it (failure_test.cpp).
#include <pthread.h>

#include "e2e_prog.h"

static void* idle(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(void) {
  e2e_setup();
  pthread_t th;
  E2E_SYS(pthread_create(&th, NULL, idle, NULL) == 0 ? 0 : -1);
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_NONE;
  timer_t t;
  E2E_SYS(timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &t));
  e2e_ready();
  e2e_wait_go();
  return e2e_finish();
}
