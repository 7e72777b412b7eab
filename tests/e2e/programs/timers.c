// Interval timers: ITIMER_REAL keeps counting down across the dump (remaining time checked
// approximately) and keeps its interval; ITIMER_VIRTUAL and ITIMER_PROF keep what is left of
// their value and their interval. The program burns CPU before READY, so that what is left of a
// CPU-time timer is clearly less than a timer re-armed with its first value would show.
#include <sys/resource.h>
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
  struct itimerval prof = {.it_interval = {4, 0}, .it_value = {200, 0}};
  signal(SIGPROF, on_alarm);
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  E2E_SYS(setitimer(ITIMER_VIRTUAL, &virt, NULL));
  E2E_SYS(setitimer(ITIMER_PROF, &prof, NULL));
  e2e_burn_cpu(0.3);
  getrusage(RUSAGE_SELF, &ru1);
  // After the burn, which takes long on a loaded machine: the wall-clock checks below count
  // from here.
  E2E_SYS(setitimer(ITIMER_REAL, &real, NULL));
  double set_at = e2e_now();
  // The CPU time the timers counted before the dump (rusage after a restore starts again).
  double user = tv(ru1.ru_utime) - tv(ru0.ru_utime);
  double total = user + tv(ru1.ru_stime) - tv(ru0.ru_stime);
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
  // Process CPU time is sampled differently by setitimer, getitimer and getrusage: tens of ms
  // of noise is not a lost or re-armed timer, which would show 100 (0.3 s burnt before READY).
  E2E_CHECK(tv(now.it_value) > 100 - user - 0.5 && tv(now.it_value) < 100 - user + 0.1 &&
                tv(now.it_value) < 99.8,
            "ITIMER_VIRTUAL has %.3f s left after %.3f s of user time, want %.3f", tv(now.it_value),
            user, 100 - user);
  getitimer(ITIMER_PROF, &now);
  E2E_CHECK(now.it_interval.tv_sec == 4, "ITIMER_PROF interval is %.3f s, want 4",
            tv(now.it_interval));
  E2E_CHECK(tv(now.it_value) > 200 - total - 0.5 && tv(now.it_value) < 200 - total + 0.1 &&
                tv(now.it_value) < 199.8,
            "ITIMER_PROF has %.3f s left after %.3f s of CPU time, want %.3f", tv(now.it_value),
            total, 200 - total);
  unsigned left = alarm(0);
  E2E_CHECK(left >= 17 && left <= 20, "alarm(0) says %u s were left", left);
  E2E_CHECK(alarms == 0, "a timer fired early");
  return e2e_finish();
}
