// Calls the vdso's functions (clock_gettime, gettimeofday, time, getcpu through libc, which
// found them at start) and compares them with the same calls made as system calls: after a
// restore through a vdso proxy, every call must still land in working code and give the time.
// A second thread does nothing but call clock_gettime, so that dumps catch it inside the vdso.
#include <sched.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "e2e_prog.h"

static long long ns_of(struct timespec t) {
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void check_clock(clockid_t clock, const char* name) {
  struct timespec v, s;
  E2E_CHECK(clock_gettime(clock, &v) == 0, "%s through the vdso failed", name);
  E2E_CHECK(syscall(SYS_clock_gettime, clock, &s) == 0, "%s as a system call failed", name);
  long long diff = ns_of(s) - ns_of(v);
  E2E_CHECK(diff >= 0 && diff < 1000000000LL, "%s: vdso %lld ns, system call %lld ns", name,
            ns_of(v), ns_of(s));
}

static void check_all(void) {
  check_clock(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
  check_clock(CLOCK_REALTIME, "CLOCK_REALTIME");
  check_clock(CLOCK_BOOTTIME, "CLOCK_BOOTTIME");
  struct timeval tv;
  E2E_CHECK(gettimeofday(&tv, NULL) == 0, "gettimeofday failed");
  // time() reads the coarse clock, updated once a tick: it may be a second behind.
  time_t now = time(NULL);
  E2E_CHECK(now - tv.tv_sec >= -1 && now - tv.tv_sec <= 1, "time %ld, gettimeofday %ld", (long)now,
            (long)tv.tv_sec);
  int cpu = sched_getcpu();
  E2E_CHECK(cpu >= 0, "sched_getcpu failed");
}

// Calls clock_gettime and nothing else: a dump mostly finds this thread inside the vdso's code.
static volatile unsigned long spins;
static void* spin(void* arg) {
  (void)arg;
  struct timespec t;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    ++spins;
  }
  return NULL;
}

int main(void) {
  e2e_setup();
  check_all();
  pthread_t spinner;
  e2e_thread(&spinner, spin, NULL);
  e2e_ready();
  while (!e2e_go) check_all();  // keeps calling into the vdso while being dumped
  for (int i = 0; i < 10000; ++i) check_all();
  unsigned long before = spins;
  struct timespec pause = {0, 20000000};
  nanosleep(&pause, NULL);
  E2E_CHECK(spins > before, "the thread calling clock_gettime in a loop stopped");
  return e2e_finish();
}
