// A thread in a 3 s nanosleep across the dump: after restore it must sleep only what was left
// (approximately: the time the process was not running counts as slept or not, within 1.5 s).
#include <pthread.h>

#include "e2e_prog.h"

static double slept = -1;
static int rc = -2;

static void* sleeper(void* arg) {
  (void)arg;
  double start = e2e_now();
  struct timespec req = {3, 0}, rem = {0, 0};
  rc = nanosleep(&req, &rem);
  slept = e2e_now() - start;
  return NULL;
}

int main(void) {
  e2e_setup();
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, NULL);
  pthread_t th;
  pthread_create(&th, NULL, sleeper, NULL);
  pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
  e2e_ready();
  e2e_wait_go();
  E2E_CHECK(rc == -2, "nanosleep returned early (%d after %.2f s)", rc, slept);
  pthread_join(th, NULL);
  E2E_CHECK(rc == 0, "nanosleep failed: %s", strerror(errno));
  E2E_CHECK(slept >= 2.99 && slept < 4.5, "3 s nanosleep took %.2f s", slept);
  return e2e_finish();
}
