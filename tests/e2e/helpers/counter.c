// Prints a counter every 20 ms after READY (follows the protocol of programs/e2e_prog.h); the
// runner's cycle tests check that a restored process carries on with no gap and no repeat. On
// SIGUSR2 it prints PASS and exits.
#include "e2e_prog.h"

int main(void) {
  e2e_setup();
  e2e_ready();
  for (unsigned long i = 0; !e2e_go; ++i) {
    e2e_say("%lu", i);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return e2e_finish();
}
