// Interval timers: ITIMER_REAL keeps counting down across the dump (remaining time checked
// approximately) and keeps its interval; ITIMER_VIRTUAL keeps its value and interval.
#include <sys/time.h>

#include "e2e_prog.h"

static volatile int alarms;
static void on_alarm(int sig) {
  (void)sig;
  ++alarms;
}

static double tv(struct timeval t) {
  return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

int main(void) {
  e2e_setup();
  signal(SIGALRM, on_alarm);
  signal(SIGVTALRM, on_alarm);
  struct itimerval real = {.it_interval = {7, 0}, .it_value = {20, 0}};
  struct itimerval virt = {.it_interval = {3, 0}, .it_value = {100, 0}};
  E2E_SYS(setitimer(ITIMER_REAL, &real, NULL));
  E2E_SYS(setitimer(ITIMER_VIRTUAL, &virt, NULL));
  double set_at = e2e_now();
  e2e_ready();
  e2e_wait_go();

  double elapsed = e2e_now() - set_at;
  struct itimerval now;
  getitimer(ITIMER_REAL, &now);
  E2E_CHECK(now.it_interval.tv_sec == 7 && now.it_interval.tv_usec == 0,
            "ITIMER_REAL interval is %.3f s, want 7", tv(now.it_interval));
  // Whether the time the process spent as an image counts is the engine's choice; the runner
  // waits 100 ms after READY before dumping, so at least that much must be gone.
  double want = 20 - elapsed;
  E2E_CHECK(tv(now.it_value) > want - 1.5 && tv(now.it_value) <= 20 - 0.09,
            "ITIMER_REAL has %.3f s left after %.3f s, want between %.3f and %.3f",
            tv(now.it_value), elapsed, want - 1.5, 20 - 0.09);
  getitimer(ITIMER_VIRTUAL, &now);
  E2E_CHECK(now.it_interval.tv_sec == 3, "ITIMER_VIRTUAL interval is %.3f s, want 3",
            tv(now.it_interval));
  // Process CPU time is sampled differently by setitimer and getitimer; a few ms of noise is
  // not a lost or reset timer.
  E2E_CHECK(tv(now.it_value) > 95 && tv(now.it_value) <= 100.05, "ITIMER_VIRTUAL has %.3f s left",
            tv(now.it_value));
  unsigned left = alarm(0);
  E2E_CHECK(left >= 17 && left <= 20, "alarm(0) says %u s were left", left);
  E2E_CHECK(alarms == 0, "a timer fired early");
  return e2e_finish();
}
