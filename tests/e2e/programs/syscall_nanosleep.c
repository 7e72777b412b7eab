// Threads in 4 s sleeps across the dump, which comes 2 s into them: after restore each must
// sleep only what was left, as the kernel told it through the `rem` argument (restarting with the
// full 4 s would make them sleep 6 s in all). Covers nanosleep(2) itself, glibc's nanosleep
// (clock_nanosleep underneath), and an absolute clock_nanosleep, which must wake at its deadline.
#include <pthread.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

enum { kSleep = 4, kBeforeDump = 2 };

struct sleeper {
  const char* name;
  int rc;
  double slept;
};

static void* relative_sleep(void* arg) {
  struct sleeper* s = arg;
  double start = e2e_now();
  struct timespec req = {kSleep, 0}, rem = {0, 0};
  s->rc = nanosleep(&req, &rem);
  s->slept = e2e_now() - start;
  return NULL;
}

static void* raw_nanosleep(void* arg) {
  struct sleeper* s = arg;
  double start = e2e_now();
  struct timespec req = {kSleep, 0}, rem = {0, 0};
  s->rc = (int)syscall(SYS_nanosleep, &req, &rem);
  s->slept = e2e_now() - start;
  return NULL;
}

static void* absolute_sleep(void* arg) {
  struct sleeper* s = arg;
  double start = e2e_now();
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += kSleep;
  s->rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL);
  s->slept = e2e_now() - start;
  return NULL;
}

int main(void) {
  e2e_setup();
  struct sleeper s[3] = {{"nanosleep", -2, -1}, {"SYS_nanosleep", -2, -1}, {"absolute", -2, -1}};
  void* (*fn[3])(void*) = {relative_sleep, raw_nanosleep, absolute_sleep};
  pthread_t th[3];
  for (int i = 0; i < 3; ++i) e2e_thread(&th[i], fn[i], &s[i]);
  sleep(kBeforeDump);
  e2e_ready();
  e2e_wait_go();
  for (int i = 0; i < 3; ++i)
    E2E_CHECK(s[i].rc == -2, "%s returned early (%d after %.2f s)", s[i].name, s[i].rc, s[i].slept);
  for (int i = 0; i < 3; ++i) {
    pthread_join(th[i], NULL);
    E2E_CHECK(s[i].rc == 0, "%s failed: %d", s[i].name, s[i].rc);
    // The time between dump and restore counts as slept; the runner takes well under 1.5 s.
    E2E_CHECK(s[i].slept >= kSleep - 0.01 && s[i].slept < kSleep + 1.5, "%d s %s took %.2f s",
              kSleep, s[i].name, s[i].slept);
  }
  return e2e_finish();
}
