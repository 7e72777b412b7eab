// Threads blocked in calls that swap the signal mask for the time they wait: sigsuspend(),
// ppoll(), pselect6() and epoll_pwait(), each with a mask of its own (SIGUSR1 blocked) and a
// different one for the wait (SIGUSR1 let through). The kernel keeps the thread's own mask aside
// while it waits and puts it back when the call returns; a dump that saved the mask of the wait
// as the thread's own would leave SIGUSR1 let through once the call has returned. After restore
// each thread must be waiting again with the wait's mask, return EINTR only for the SIGUSR1 the
// main thread sends after the go, and then have its own mask back.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

enum { kSigsuspend, kPpoll, kPselect, kEpollPwait, kWaiters };
static const char* const kNames[kWaiters] = {"sigsuspend", "ppoll", "pselect6", "epoll_pwait"};
static const long kSyscalls[kWaiters] = {SYS_rt_sigsuspend, SYS_ppoll, SYS_pselect6,
                                         SYS_epoll_pwait};

struct waiter {
  int kind;
  int pipe[2];
  volatile int tid;
  volatile int returned;
  long rc;
  int err;
  sigset_t own_after;  // the thread's mask once the call returned
};

static volatile sig_atomic_t usr1_seen;
static void on_usr1(int sig) {
  (void)sig;
  usr1_seen = 1;
}

// The thread's own mask: SIGUSR1 (the wake-up), SIGUSR2 (the runner's go, for the main thread),
// SIGHUP and a realtime signal, so that a lost mask shows in more than one bit.
static void own_mask(sigset_t* s) {
  sigemptyset(s);
  sigaddset(s, SIGUSR1);
  sigaddset(s, SIGUSR2);
  sigaddset(s, SIGHUP);
  sigaddset(s, SIGRTMIN + 2);
}

// The mask while waiting: SIGUSR1 let through, SIGUSR2 and SIGTERM blocked.
static void wait_mask(sigset_t* s) {
  sigemptyset(s);
  sigaddset(s, SIGUSR2);
  sigaddset(s, SIGTERM);
}

static uint64_t mask_bits(const sigset_t* s) {
  uint64_t bits = 0;
  for (int sig = 1; sig <= 64; ++sig)
    if (sigismember(s, sig) == 1) bits |= (uint64_t)1 << (sig - 1);
  return bits;
}

static void* wait_thread(void* arg) {
  struct waiter* w = arg;
  sigset_t own, during;
  own_mask(&own);
  wait_mask(&during);
  pthread_sigmask(SIG_SETMASK, &own, NULL);
  int fd = w->pipe[0];
  w->tid = (int)syscall(SYS_gettid);
  if (w->kind == kSigsuspend) {
    w->rc = sigsuspend(&during);
  } else if (w->kind == kPpoll) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    w->rc = syscall(SYS_ppoll, &pfd, 1, NULL, &during, (size_t)8);
  } else if (w->kind == kPselect) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct {
      const sigset_t* set;
      size_t size;
    } sig = {&during, 8};
    w->rc = syscall(SYS_pselect6, fd + 1, &set, NULL, NULL, NULL, &sig);
  } else {
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    w->rc = syscall(SYS_epoll_pwait, ep, &ev, 1, -1, &during, (size_t)8);
  }
  w->err = w->rc < 0 ? errno : 0;
  pthread_sigmask(SIG_SETMASK, NULL, &w->own_after);
  w->returned = 1;
  return NULL;
}

// SigBlk of a thread as /proc shows it: the wait's mask while it waits.
static uint64_t proc_sigblk(int tid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  FILE* f = fopen(path, "r");
  uint64_t bits = ~(uint64_t)0;
  if (!f) return bits;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "SigBlk: %lx", &bits) == 1) break;
  fclose(f);
  return bits;
}

// A thread let go by the restorer re-enters its call only once it is scheduled.
static int back_in_call(const struct waiter* w) {
  for (int i = 0; i < 2000; ++i) {
    if (e2e_syscall_of(w->tid) == kSyscalls[w->kind]) return 1;
    usleep(1000);
  }
  return 0;
}

int main(void) {
  e2e_setup();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  struct waiter w[kWaiters];
  pthread_t th[kWaiters];
  memset(w, 0, sizeof w);
  for (int i = 0; i < kWaiters; ++i) {
    w[i].kind = i;
    E2E_SYS(pipe(w[i].pipe));
    e2e_thread(&th[i], wait_thread, &w[i]);
  }
  for (int i = 0; i < kWaiters; ++i)
    while (!w[i].tid || e2e_syscall_of(w[i].tid) != kSyscalls[i]) usleep(1000);
  e2e_ready();
  e2e_wait_go();

  sigset_t own, during;
  own_mask(&own);
  wait_mask(&during);
  for (int i = 0; i < kWaiters; ++i) {
    const char* name = kNames[i];
    E2E_CHECK(!w[i].returned, "%s returned before the wake-up: %ld (%s)", name, w[i].rc,
              strerror(w[i].err));
    E2E_CHECK(back_in_call(&w[i]), "%s: the thread is not back in its call", name);
    E2E_CHECK(proc_sigblk(w[i].tid) == mask_bits(&during),
              "%s waits with mask %016lx, want the wait's %016lx", name,
              (unsigned long)proc_sigblk(w[i].tid), (unsigned long)mask_bits(&during));
    E2E_SYS(pthread_kill(th[i], SIGUSR1));
    pthread_join(th[i], NULL);
    E2E_CHECK(w[i].rc == -1 && w[i].err == EINTR, "%s returned %ld (%s), want EINTR", name, w[i].rc,
              strerror(w[i].err));
    E2E_CHECK(mask_bits(&w[i].own_after) == mask_bits(&own),
              "%s returned to mask %016lx, want the thread's own %016lx", name,
              (unsigned long)mask_bits(&w[i].own_after), (unsigned long)mask_bits(&own));
  }
  E2E_CHECK(usr1_seen, "no SIGUSR1 handled");
  return e2e_finish();
}
