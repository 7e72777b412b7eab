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

// A dump or restore may freeze the program between two reads for any time, so the check is that
// the vdso's time lies between two system calls around it, not that they are close. A freeze can
// only spoil one attempt; a vdso giving a wrong time spoils them all.
static int vdso_between_syscalls(clockid_t clock, long long* vdso, long long* sys) {
  struct timespec before, v, after;
  if (syscall(SYS_clock_gettime, clock, &before) != 0 || clock_gettime(clock, &v) != 0 ||
      syscall(SYS_clock_gettime, clock, &after) != 0)
    return 0;
  *vdso = ns_of(v);
  *sys = ns_of(before);
  return ns_of(before) <= *vdso && *vdso <= ns_of(after);
}

static void check_clock(clockid_t clock, const char* name) {
  long long vdso = 0, sys = 0;
  int ok = 0;
  for (int attempt = 0; attempt < 5 && !ok; ++attempt)
    ok = vdso_between_syscalls(clock, &vdso, &sys);
  E2E_CHECK(ok, "%s: vdso %lld ns, not after the system call's %lld ns or not before the next",
            name, vdso, sys);
}

// time() reads the coarse clock, updated once a tick: it may be a second behind.
static int time_near_gettimeofday(void) {
  struct timeval tv;
  if (gettimeofday(&tv, NULL) != 0) return 0;
  time_t now = time(NULL);
  return now - tv.tv_sec >= -1 && now - tv.tv_sec <= 1;
}

static void check_all(void) {
  check_clock(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
  check_clock(CLOCK_REALTIME, "CLOCK_REALTIME");
  check_clock(CLOCK_BOOTTIME, "CLOCK_BOOTTIME");
  int ok = 0;
  for (int attempt = 0; attempt < 5 && !ok; ++attempt) ok = time_near_gettimeofday();
  E2E_CHECK(ok, "time() and gettimeofday() are more than a second apart");
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
