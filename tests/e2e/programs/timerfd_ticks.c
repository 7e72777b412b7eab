// timerfd expirations not yet read survive dump and restore:
//   exact: periodic (20 s) with its first expiration 5.5 periods in the past, so that exactly 6
//          expirations wait and the next one is about 10 s away;
//   fast:  every 10 ms, never read before the dump: after restore read() returns at least the
//          expirations that had happened by READY, and the timer keeps running;
//   once:  a one-shot that expired: one expiration, then disarmed.
#include <stdint.h>
#include <sys/timerfd.h>

#include "e2e_prog.h"

static double ts(struct timespec t) {
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t read_ticks(int fd, const char* name) {
  uint64_t n = 0;
  if (read(fd, &n, sizeof n) != sizeof n) {
    e2e_say("FAIL read %s timerfd: %s", name, strerror(errno));
    ++e2e_failures;
  }
  return n;
}

int main(void) {
  e2e_setup();
  int exact = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  int fast = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  int once = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
  E2E_SYS(exact);
  E2E_SYS(fast);
  E2E_SYS(once);

  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (now.tv_sec < 111) {  // the machine booted less than 111 s ago: wait for the clock
    e2e_say("FAIL the monotonic clock is only at %lld s", (long long)now.tv_sec);
    return 1;
  }
  struct itimerspec spec = {.it_interval = {20, 0}, .it_value = {now.tv_sec - 110, now.tv_nsec}};
  E2E_SYS(timerfd_settime(exact, TFD_TIMER_ABSTIME, &spec, NULL));
  struct itimerspec every_10ms = {.it_interval = {0, 10000000}, .it_value = {0, 10000000}};
  E2E_SYS(timerfd_settime(fast, 0, &every_10ms, NULL));
  double fast_set_at = e2e_now();
  struct itimerspec one_shot = {.it_interval = {0, 0}, .it_value = {0, 1000000}};
  E2E_SYS(timerfd_settime(once, 0, &one_shot, NULL));
  struct timespec pause = {0, 200 * 1000 * 1000};
  nanosleep(&pause, NULL);
  double ready_at = e2e_now();
  e2e_ready();
  e2e_wait_go();

  double elapsed = e2e_now() - ready_at;
  uint64_t n = read_ticks(exact, "exact");
  E2E_CHECK(n == 6, "the 20 s timerfd had %llu expirations waiting, want 6", (unsigned long long)n);
  struct itimerspec left;
  E2E_SYS(timerfd_gettime(exact, &left));
  E2E_CHECK(ts(left.it_interval) == 20, "the 20 s timerfd has an interval of %.3f s",
            ts(left.it_interval));
  E2E_CHECK(ts(left.it_value) > 10 - elapsed - 1.5 && ts(left.it_value) <= 10,
            "the 20 s timerfd expires in %.3f s, want about %.3f", ts(left.it_value), 10 - elapsed);

  // At least the periods that had passed by READY (less one for timer slack), at most the
  // periods of the whole wall-clock time since it was armed.
  double min_fast = (ready_at - fast_set_at) / 0.01 - 1;
  double max_fast = (e2e_now() - fast_set_at) / 0.01 + 1;
  n = read_ticks(fast, "fast");
  E2E_CHECK((double)n >= min_fast && (double)n <= max_fast,
            "the 10 ms timerfd had %llu expirations waiting, want %.0f to %.0f",
            (unsigned long long)n, min_fast, max_fast);
  nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  n = read_ticks(fast, "fast (again)");
  E2E_CHECK(n >= 2, "the 10 ms timerfd expired %llu times in 50 ms after restore",
            (unsigned long long)n);

  n = read_ticks(once, "once");
  E2E_CHECK(n == 1, "the one-shot timerfd had %llu expirations waiting, want 1",
            (unsigned long long)n);
  E2E_SYS(timerfd_gettime(once, &left));
  E2E_CHECK(ts(left.it_value) == 0, "the one-shot timerfd is armed again (%.3f s)",
            ts(left.it_value));
  return e2e_finish();
}
