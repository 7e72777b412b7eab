// Threads that come and go all the time (like a pool that grows and shrinks): two threads at a
// time, each living a few hundred microseconds, while main prints a counter every 20 ms. Dumps
// catch threads being created and exiting; neither may make a dump fail or lose a thread.
#include <pthread.h>
#include <stdatomic.h>

#include "e2e_prog.h"

static atomic_long finished;

static void* short_life(void* arg) {
  (void)arg;
  struct timespec ts = {0, 300 * 1000};
  nanosleep(&ts, NULL);
  atomic_fetch_add(&finished, 1);
  return NULL;
}

static void* churn(void* arg) {
  (void)arg;
  for (;;) {
    pthread_t t[2];
    for (int i = 0; i < 2; ++i) pthread_create(&t[i], NULL, short_life, NULL);
    for (int i = 0; i < 2; ++i) pthread_join(t[i], NULL);
  }
  return NULL;
}

int main(void) {
  e2e_setup();
  pthread_t churner;
  e2e_thread(&churner, churn, NULL);
  e2e_ready();
  long before = 0;
  for (unsigned long i = 0; !e2e_go; ++i) {
    e2e_say("%lu", i);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    long now = atomic_load(&finished);
    if (i % 10 == 9) {
      E2E_CHECK(now > before, "no short-lived thread finished in 200 ms (%ld)", now);
      before = now;
    }
  }
  return e2e_finish();
}
