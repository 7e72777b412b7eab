// POSIX timers (timer_create) keep their IDs, clocks, notifications, remaining times and
// intervals across dump and restore:
//   periodic: CLOCK_MONOTONIC, SIGEV_SIGNAL, every 20 ms, counted by a handler that also checks
//             si_value and si_timerid;
//   to_thread: CLOCK_REALTIME, SIGEV_THREAD_ID to a second thread, every 30 ms;
//             (both fire a few times before READY, then are re-armed to resume 2 s later, so
//             that no signal is in flight while the runner compares /proc before and after)
//   queued:   CLOCK_MONOTONIC, one-shot, its signal blocked: the SI_TIMER signal is still queued
//             at the dump and is delivered with its timer ID and value after restore;
//   quiet:    CLOCK_BOOTTIME, SIGEV_NONE, 50 s one-shot (remaining time checked);
//   cpu:      CLOCK_PROCESS_CPUTIME_ID, 1000 s with a 5 s interval (never fires here); the
//             program burns 0.3 s of CPU after arming it, so that what is left is clearly less
//             than a timer re-armed with its first value would show;
//   idle:     CLOCK_MONOTONIC, created but never armed.
// Fillers are created and deleted in between so that the IDs are not contiguous.
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

enum { kPeriodicValue = 0xa11, kThreadValue = 0xb22, kQueuedValue = 0xc33 };

static timer_t periodic, to_thread, quiet, cpu, idle, queued;
static volatile int periodic_fired, periodic_bad;
static volatile int thread_fired, thread_bad;
static volatile int queued_fired, queued_bad;
static volatile pid_t worker_tid;
static volatile int stop_worker;

static int id_of(timer_t t) {
  return (int)(intptr_t)t;
}

static void on_periodic(int sig, siginfo_t* si, void* uc) {
  (void)sig;
  (void)uc;
  ++periodic_fired;
  if (si->si_code != SI_TIMER || si->si_value.sival_int != kPeriodicValue ||
      si->si_timerid != id_of(periodic))
    ++periodic_bad;
}

static void on_to_thread(int sig, siginfo_t* si, void* uc) {
  (void)sig;
  (void)uc;
  ++thread_fired;
  if ((pid_t)syscall(SYS_gettid) != worker_tid || si->si_value.sival_int != kThreadValue ||
      si->si_timerid != id_of(to_thread))
    ++thread_bad;
}

static void on_queued(int sig, siginfo_t* si, void* uc) {
  (void)sig;
  (void)uc;
  ++queued_fired;
  if (si->si_code != SI_TIMER || si->si_value.sival_int != kQueuedValue ||
      si->si_timerid != id_of(queued))
    ++queued_bad;
}

static void* worker(void* arg) {
  (void)arg;
  worker_tid = (pid_t)syscall(SYS_gettid);
  while (!stop_worker) pause();
  return NULL;
}

static void make_timer(clockid_t clock, int notify, int signo, int value, pid_t tid, timer_t* t) {
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = notify;
  ev.sigev_signo = signo;
  ev.sigev_value.sival_int = value;
  ev._sigev_un._tid = tid;
  E2E_SYS(timer_create(clock, &ev, t));
}

static void arm(timer_t t, double value, double interval) {
  struct itimerspec spec;
  spec.it_value.tv_sec = (time_t)value;
  spec.it_value.tv_nsec = (long)((value - (double)(time_t)value) * 1e9);
  spec.it_interval.tv_sec = (time_t)interval;
  spec.it_interval.tv_nsec = (long)((interval - (double)(time_t)interval) * 1e9);
  E2E_SYS(timer_settime(t, 0, &spec, NULL));
}

static void filler(void) {
  timer_t t;
  make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0, &t);
  E2E_SYS(timer_delete(t));
}

static void on_signal(int sig, void (*fn)(int, siginfo_t*, void*)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  E2E_SYS(sigaction(sig, &sa, NULL));
}

static double ts(struct timespec t) {
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_for(double seconds) {
  double until = e2e_now() + seconds;
  while (e2e_now() < until) {
    struct timespec step = {0, 5 * 1000 * 1000};
    nanosleep(&step, NULL);
  }
}

static double cpu_used;  // by the process between arming `cpu` and READY

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return ts(t);
}

static void check_timers_after(double elapsed) {
  struct itimerspec now;
  E2E_CHECK(timer_gettime(quiet, &now) == 0, "timer_gettime(quiet): %s", strerror(errno));
  double want = 50 - elapsed;
  E2E_CHECK(ts(now.it_value) > want - 1.5 && ts(now.it_value) <= 50 - 0.09,
            "SIGEV_NONE timer has %.3f s left after %.3f s, want between %.3f and %.3f",
            ts(now.it_value), elapsed, want - 1.5, 50 - 0.09);
  E2E_CHECK(ts(now.it_interval) == 0, "SIGEV_NONE timer got an interval of %.3f s",
            ts(now.it_interval));
  E2E_CHECK(timer_gettime(cpu, &now) == 0, "timer_gettime(cpu): %s", strerror(errno));
  E2E_CHECK(ts(now.it_interval) == 5, "CPU-time timer interval is %.3f s, want 5",
            ts(now.it_interval));
  E2E_CHECK(ts(now.it_value) > 1000 - cpu_used - 0.5 && ts(now.it_value) < 1000 - cpu_used + 0.05 &&
                ts(now.it_value) < 999.8,
            "CPU-time timer has %.3f s left after %.3f s of CPU time, want %.3f", ts(now.it_value),
            cpu_used, 1000 - cpu_used);
  E2E_CHECK(timer_gettime(idle, &now) == 0, "timer_gettime(idle): %s", strerror(errno));
  E2E_CHECK(ts(now.it_value) == 0, "the idle timer was armed (%.3f s)", ts(now.it_value));
  E2E_CHECK(timer_gettime(periodic, &now) == 0 && ts(now.it_interval) > 0.0199 &&
                ts(now.it_interval) < 0.0201,
            "periodic timer interval is %.4f s, want 0.02", ts(now.it_interval));
  E2E_CHECK(timer_getoverrun(periodic) >= 0, "timer_getoverrun: %s", strerror(errno));
}

static int queued_pending(void) {
  sigset_t set;
  sigpending(&set);
  return sigismember(&set, SIGRTMIN + 3);
}

static void wait_until(volatile int* counter, int target, double seconds) {
  double until = e2e_now() + seconds;
  while (*counter < target && e2e_now() < until) sleep_for(0.005);
}

int main(void) {
  e2e_setup();
  on_signal(SIGRTMIN, on_periodic);
  on_signal(SIGRTMIN + 1, on_to_thread);
  on_signal(SIGRTMIN + 3, on_queued);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGRTMIN + 3);
  E2E_SYS(sigprocmask(SIG_BLOCK, &block, NULL));  // before the worker starts: it inherits it
  pthread_t th;
  E2E_SYS(pthread_create(&th, NULL, worker, NULL) == 0 ? 0 : -1);
  while (!worker_tid) sleep_for(0.001);

  make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, kPeriodicValue, 0, &periodic);
  filler();
  filler();
  make_timer(CLOCK_REALTIME, SIGEV_THREAD_ID, SIGRTMIN + 1, kThreadValue, worker_tid, &to_thread);
  make_timer(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0, 0, &quiet);
  for (int i = 0; i < 5; ++i) filler();
  make_timer(CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGRTMIN + 2, 0, 0, &cpu);
  make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 2, 0, 0, &idle);
  make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 3, kQueuedValue, 0, &queued);
  timer_t saved[6] = {periodic, to_thread, quiet, cpu, idle, queued};

  arm(periodic, 0.02, 0.02);
  arm(to_thread, 0.03, 0.03);
  arm(quiet, 50, 0);
  double cpu_at_arm = cpu_now();
  arm(cpu, 1000, 5);
  arm(queued, 0.001, 0);
  double set_at = e2e_now();
  e2e_burn_cpu(0.3);  // before the re-arm below: the 2 s of quiet stay for the dump
  wait_until(&periodic_fired, 3, 10);
  wait_until(&thread_fired, 2, 10);
  while (!queued_pending()) sleep_for(0.001);
  arm(periodic, 2, 0.02);
  arm(to_thread, 2, 0.03);
  sleep_for(0.05);  // a signal sent just before the re-arm is handled
  cpu_used = cpu_now() - cpu_at_arm;
  e2e_ready();
  e2e_wait_go();

  check_timers_after(e2e_now() - set_at);
  timer_t now[6] = {periodic, to_thread, quiet, cpu, idle, queued};
  E2E_CHECK(memcmp(saved, now, sizeof saved) == 0, "the program's timer_t values changed");
  E2E_CHECK(queued_pending(), "the queued timer signal was lost");
  E2E_SYS(sigprocmask(SIG_UNBLOCK, &block, NULL));
  E2E_CHECK(queued_fired == 1 && queued_bad == 0,
            "queued timer signal: delivered %d times, %d with wrong si_code/si_value/si_timerid",
            queued_fired, queued_bad);
  int p0 = periodic_fired, t0 = thread_fired;
  wait_until(&periodic_fired, p0 + 5, 5);
  wait_until(&thread_fired, t0 + 4, 5);
  E2E_CHECK(periodic_fired - p0 >= 5, "periodic timer fired %d times in 5 s after restore",
            periodic_fired - p0);
  E2E_CHECK(thread_fired - t0 >= 4, "thread timer fired %d times in 5 s after restore",
            thread_fired - t0);
  E2E_CHECK(periodic_bad == 0, "%d periodic signals had a wrong si_value/si_timerid", periodic_bad);
  E2E_CHECK(thread_bad == 0,
            "%d thread-directed signals went to the wrong thread or had wrong info", thread_bad);
  // New timers get IDs of their own, not one of the restored ones.
  timer_t fresh;
  make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0, &fresh);
  for (int i = 0; i < 6; ++i)
    E2E_CHECK(id_of(fresh) != id_of(saved[i]), "a new timer got the ID %d of a restored one",
              id_of(fresh));
  stop_worker = 1;
  pthread_kill(th, SIGRTMIN + 1);
  pthread_join(th, NULL);
  return e2e_finish();
}
