// A long computation whose every step depends on the one before: two threads each extend a hash
// chain (s = mix(s + i)), resting 1 ms every 200 steps, until SIGUSR2; then it prints
// "RESULT I0 S0 I1 S1" and exits 0. A test recomputes the chains: any state lost or damaged by a
// crash and a recovery from a checkpoint shows as a wrong S for its I.
#include <stdatomic.h>
#include <stdint.h>

#include "e2e_prog.h"

struct link {
  _Atomic uint64_t i, s;
};

static struct link chains[2];
static atomic_int stop;

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void* extend(void* arg) {
  struct link* c = arg;
  uint64_t i = atomic_load(&c->i), s = atomic_load(&c->s);
  while (!atomic_load(&stop)) {
    for (int k = 0; k < 200; ++k) s = mix(s + ++i);
    // (i, s) go together: a reader sees both only once stop is set and the thread has ended.
    atomic_store(&c->i, i);
    atomic_store(&c->s, s);
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(void) {
  e2e_setup();
  atomic_store(&chains[1].s, 1);
  pthread_t t;
  e2e_thread(&t, extend, &chains[1]);
  e2e_ready();
  pthread_t self_chain;
  e2e_thread(&self_chain, extend, &chains[0]);
  e2e_sleep_until_go();
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  pthread_join(self_chain, NULL);
  e2e_say("RESULT %lu %lu %lu %lu", (unsigned long)chains[0].i, (unsigned long)chains[0].s,
          (unsigned long)chains[1].i, (unsigned long)chains[1].s);
  return 0;
}
