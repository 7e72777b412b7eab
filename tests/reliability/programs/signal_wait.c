// A program that waits for one signal in a blocking call, as daemons do: a SIGUSR1 handler (no
// SA_RESTART) sets a flag, and the main thread loops `while (!flag) WAIT;`. A signal that reaches
// it while ckpt holds it must still end the wait: lost, or delivered without interrupting the call
// it came back to, the program waits forever.
//
//   signal_wait MODE     MODE: pause, sigsuspend, nanosleep, read, epoll
//
// Prints READY once waiting, then WOKE MODE once the flag is seen, and exits 0. A second thread
// (SIGUSR1 blocked) sleeps meanwhile, so that the signal has one thread to go to.
#include <sys/epoll.h>

#include "e2e_prog.h"

static volatile sig_atomic_t woken;

// Says so at once: a handler that ran without ending the wait is a lost EINTR, not a lost signal.
static void on_usr1(int sig) {
  (void)sig;
  woken = 1;
  static const char got[] = "HANDLED\n";
  ssize_t ignored = write(1, got, sizeof got - 1);
  (void)ignored;
}

static void* sleeper(void* arg) {
  (void)arg;
  for (;;) sleep(1000);
  return NULL;
}

static void start_sleeper(void) {
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &old);
  pthread_t t;
  int err = pthread_create(&t, NULL, sleeper, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    e2e_say("FAIL pthread_create: %s", strerror(err));
    exit(1);
  }
}

// One wait of MODE; it may only return early with EINTR.
static void wait_once(const char* mode, int fds[2], int ep) {
  int r = 0;
  if (strcmp(mode, "pause") == 0) {
    r = pause();
  } else if (strcmp(mode, "sigsuspend") == 0) {
    sigset_t none;
    sigemptyset(&none);
    r = sigsuspend(&none);
  } else if (strcmp(mode, "nanosleep") == 0) {
    struct timespec hour = {3600, 0};
    r = nanosleep(&hour, NULL);
  } else if (strcmp(mode, "read") == 0) {
    char c;
    r = (int)read(fds[0], &c, 1);
  } else if (strcmp(mode, "epoll") == 0) {
    struct epoll_event ev;
    r = epoll_wait(ep, &ev, 1, -1);
  } else {
    e2e_say("FAIL unknown mode %s", mode);
    exit(2);
  }
  if (r != -1 || errno != EINTR) {
    e2e_say("FAIL %s returned %d (%s)", mode, r, strerror(errno));
    exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    e2e_say("FAIL usage: signal_wait MODE");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  int fds[2];
  E2E_SYS(pipe(fds));
  int ep = epoll_create1(0);
  E2E_SYS(ep);
  struct epoll_event ev = {.events = EPOLLIN};
  E2E_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev));
  start_sleeper();
  e2e_say("READY");
  while (!woken) wait_once(argv[1], fds, ep);
  e2e_say("WOKE %s", argv[1]);
  return 0;
}
