// Signal state: handlers with SA_RESTART/SA_SIGINFO/SA_ONSTACK and masks, an ignored signal,
// blocked pending signals (process-wide with queued values, and thread-directed), and an
// alternate signal stack. After restore the pending signals are delivered once unblocked.
#include <pthread.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

#define RT (SIGRTMIN + 2)

static volatile int rt_values[4];
static volatile int rt_count;
static volatile pid_t usr1_tid;
static volatile int usr1_count;
static volatile int on_altstack;
static char* altstack;
static volatile pid_t thread_tid;
static volatile int thread_go, thread_done;

static pid_t tid(void) {
  return (pid_t)syscall(SYS_gettid);
}

static void on_rt(int sig, siginfo_t* si, void* uc) {
  (void)sig;
  (void)uc;
  char here;
  if (rt_count < 4) rt_values[rt_count] = si->si_value.sival_int;
  ++rt_count;
  on_altstack = &here >= altstack && &here < altstack + SIGSTKSZ * 4;
}

static void on_usr1(int sig) {
  (void)sig;
  usr1_tid = tid();
  ++usr1_count;
}

static void* directed(void* arg) {
  (void)arg;
  thread_tid = tid();
  // SIGUSR1 is blocked here (inherited); it will be sent to this thread only.
  while (!thread_go) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
  thread_done = 1;
  return NULL;
}

static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_rt;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGWINCH);
  E2E_SYS(sigaction(RT, &sa, NULL));
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGHUP);
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  signal(SIGPIPE, SIG_IGN);
  stack_t ss = {.ss_sp = altstack, .ss_size = SIGSTKSZ * 4, .ss_flags = 0};
  E2E_SYS(sigaltstack(&ss, NULL));
}

static void check_actions(void) {
  struct sigaction sa;
  sigaction(RT, NULL, &sa);
  E2E_CHECK(sa.sa_sigaction == on_rt, "RT handler changed");
  E2E_CHECK((sa.sa_flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK)) ==
                (SA_SIGINFO | SA_RESTART | SA_ONSTACK),
            "RT flags changed: %#x", (unsigned)sa.sa_flags);
  E2E_CHECK(sigismember(&sa.sa_mask, SIGTERM) && sigismember(&sa.sa_mask, SIGWINCH) &&
                !sigismember(&sa.sa_mask, SIGHUP),
            "RT handler mask changed");
  sigaction(SIGUSR1, NULL, &sa);
  E2E_CHECK(sa.sa_handler == on_usr1 && (sa.sa_flags & SA_RESTART) && !(sa.sa_flags & SA_SIGINFO),
            "SIGUSR1 action changed");
  E2E_CHECK(sigismember(&sa.sa_mask, SIGHUP), "SIGUSR1 handler mask changed");
  sigaction(SIGPIPE, NULL, &sa);
  E2E_CHECK(sa.sa_handler == SIG_IGN, "SIGPIPE no longer ignored");
  sigaction(SIGTERM, NULL, &sa);
  E2E_CHECK(sa.sa_handler == SIG_DFL, "SIGTERM not default");
  stack_t ss;
  sigaltstack(NULL, &ss);
  E2E_CHECK(ss.ss_sp == altstack && ss.ss_size == (size_t)SIGSTKSZ * 4 && ss.ss_flags == 0,
            "sigaltstack changed: sp %p size %zu flags %d", ss.ss_sp, ss.ss_size, ss.ss_flags);
}

int main(void) {
  e2e_setup();
  altstack = malloc(SIGSTKSZ * 4);
  install();
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, RT);
  sigaddset(&block, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  pthread_t th;
  pthread_create(&th, NULL, directed, NULL);
  while (!thread_tid) sched_yield();
  // Process-wide pending: two queued values. Thread-directed pending: SIGUSR1 to the thread.
  union sigval v = {.sival_int = 42};
  E2E_SYS(sigqueue(getpid(), RT, v));
  v.sival_int = 43;
  E2E_SYS(sigqueue(getpid(), RT, v));
  E2E_SYS(syscall(SYS_tgkill, getpid(), thread_tid, SIGUSR1));
  e2e_ready();
  e2e_wait_go();

  check_actions();
  sigset_t pending;
  sigpending(&pending);
  E2E_CHECK(sigismember(&pending, RT), "the queued RT signal is no longer pending");
  E2E_CHECK(rt_count == 0 && usr1_count == 0, "a blocked signal was delivered early");
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  E2E_CHECK(sigismember(&now, RT) && sigismember(&now, SIGUSR1) && !sigismember(&now, SIGUSR2),
            "main thread's signal mask changed");
  sigset_t rt_only;
  sigemptyset(&rt_only);
  sigaddset(&rt_only, RT);
  pthread_sigmask(SIG_UNBLOCK, &rt_only, NULL);
  E2E_CHECK(rt_count == 2, "%d RT signals delivered after unblocking, want 2", rt_count);
  E2E_CHECK(rt_values[0] == 42 && rt_values[1] == 43, "RT values %d %d, want 42 43", rt_values[0],
            rt_values[1]);
  E2E_CHECK(on_altstack, "SA_ONSTACK handler did not run on the alternate stack");
  thread_go = 1;
  pthread_join(th, NULL);
  E2E_CHECK(usr1_count == 1, "thread-directed SIGUSR1 delivered %d times, want 1", usr1_count);
  E2E_CHECK(usr1_tid == thread_tid, "thread-directed SIGUSR1 ran on %d, want thread %d", usr1_tid,
            thread_tid);
  return e2e_finish();
}
