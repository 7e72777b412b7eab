// Threads in calls made through glibc's generic syscall(), whose code takes the call's number from
// a register: a futex wait and a poll, each with a 20 s timeout, and a 4 s clock_nanosleep. The
// dump comes 2 s into them. After restore the futex waiter and the poller must return what the
// main thread then causes (a wake, a readiness), not EINTR or a timeout, and the sleeper must
// sleep only what was left. restart_test.cpp dumps this twice, the first time leaving it running:
// the second dump finds the three resuming their calls through restart_syscall.
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

enum { kSleep = 4, kBeforeDump = 2, kLongWait = 20 };

static int word;  // the futex: 0 until the main thread wakes its waiter
static int p[2];
static long futex_rc = -2, poll_rc = -2, sleep_rc = -2;
static int futex_errno, poll_errno, sleep_errno;
static short revents;
static double slept = -1;

static void* futex_waiter(void* arg) {
  (void)arg;
  struct timespec timeout = {kLongWait, 0};
  long rc;
  do {  // a futex wait may end without a wake; only the wake sets the word
    rc = syscall(SYS_futex, &word, FUTEX_WAIT, 0, &timeout, NULL, 0);
  } while (rc == 0 && __atomic_load_n(&word, __ATOMIC_SEQ_CST) == 0);
  futex_errno = errno;
  futex_rc = rc;
  return NULL;
}

static void* poller(void* arg) {
  (void)arg;
  struct pollfd pfd = {.fd = p[0], .events = POLLIN};
  poll_rc = syscall(SYS_poll, &pfd, 1, kLongWait * 1000);
  poll_errno = errno;
  revents = pfd.revents;
  return NULL;
}

static void* sleeper(void* arg) {
  (void)arg;
  double start = e2e_now();
  struct timespec req = {kSleep, 0}, rem = {0, 0};
  sleep_rc = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &req, &rem);
  sleep_errno = errno;
  slept = e2e_now() - start;
  return NULL;
}

int main(void) {
  e2e_setup();
  E2E_SYS(pipe(p));
  pthread_t th[3];
  void* (*fn[3])(void*) = {futex_waiter, poller, sleeper};
  for (int i = 0; i < 3; ++i) e2e_thread(&th[i], fn[i], NULL);
  sleep(kBeforeDump);
  e2e_ready();
  e2e_wait_go();
  E2E_CHECK(futex_rc == -2, "the futex wait returned early: %ld (%s)", futex_rc,
            strerror(futex_errno));
  E2E_CHECK(poll_rc == -2, "poll returned early: %ld (%s)", poll_rc, strerror(poll_errno));
  double t0 = e2e_now();
  __atomic_store_n(&word, 1, __ATOMIC_SEQ_CST);
  E2E_SYS(syscall(SYS_futex, &word, FUTEX_WAKE, 1, NULL, NULL, 0));
  E2E_SYS(write(p[1], "x", 1));
  pthread_join(th[0], NULL);
  pthread_join(th[1], NULL);
  // EAGAIN: the word was set before the call went to sleep again, as good as a wake.
  E2E_CHECK(futex_rc == 0 || futex_errno == EAGAIN, "the futex wait returned %ld (%s), not a wake",
            futex_rc, strerror(futex_errno));
  E2E_CHECK(poll_rc == 1 && (revents & POLLIN), "poll returned %ld revents %#x (%s)", poll_rc,
            revents, strerror(poll_errno));
  E2E_CHECK(e2e_now() - t0 < 2, "the waiters woke up %.2f s after the wake", e2e_now() - t0);
  pthread_join(th[2], NULL);
  E2E_CHECK(sleep_rc == 0, "clock_nanosleep returned %ld (%s)", sleep_rc, strerror(sleep_errno));
  // The time between dump and restore counts as slept; the runner takes well under 1.5 s.
  E2E_CHECK(slept >= kSleep - 0.01 && slept < kSleep + 1.5, "%d s clock_nanosleep took %.2f s",
            kSleep, slept);
  return e2e_finish();
}
