// The protocol every e2e test program follows (tests/e2e/README.md): set up state, print READY
// on stdout, wait for SIGUSR2 (sent by the runner after restore), check the state, print PASS or
// FAIL lines and exit 0 or 1. Output goes through write(2): nothing waits in a stdio buffer.
#pragma once
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t e2e_go;
static int e2e_failures;

static inline void e2e_on_go(int sig) {
  (void)sig;
  e2e_go = 1;
}

static inline void e2e_say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void e2e_say(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t ignored = write(1, buf, (size_t)n);
  (void)ignored;
}

#define E2E_CHECK(cond, ...)                                   \
  do {                                                         \
    if (!(cond)) {                                             \
      char e2e_msg_[512];                                      \
      snprintf(e2e_msg_, sizeof e2e_msg_, __VA_ARGS__);        \
      e2e_say("FAIL %s:%d: %s", __FILE__, __LINE__, e2e_msg_); \
      ++e2e_failures;                                          \
    }                                                          \
  } while (0)

#define E2E_SYS(call)                                                            \
  do {                                                                           \
    if ((call) < 0) {                                                            \
      e2e_say("FAIL %s:%d: %s: %s", __FILE__, __LINE__, #call, strerror(errno)); \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

// Installs the SIGUSR2 handler (no SA_RESTART: it must wake pause() and friends).
static inline void e2e_setup(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = e2e_on_go;
  sigemptyset(&sa.sa_mask);
  E2E_SYS(sigaction(SIGUSR2, &sa, NULL));
}

// Starts a thread that never takes the runner's SIGUSR2 (it must wake the main thread).
static inline void e2e_thread(pthread_t* t, void* (*fn)(void*), void* arg) {
  sigset_t usr2, old;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, &old);
  int err = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    e2e_say("FAIL pthread_create: %s", strerror(err));
    exit(1);
  }
}

struct e2e_go_start_ {
  void* (*fn)(void*);
};

static inline void* e2e_go_start_(void* arg) {
  struct e2e_go_start_ start = *(struct e2e_go_start_*)arg;
  free(arg);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
  return start.fn(NULL);
}

// Starts `fn` as the one thread that takes the runner's SIGUSR2: the calling thread blocks it
// from now on, so nothing but the dump interrupts what it waits in (wait4, ...).
static inline void e2e_go_thread(pthread_t* t, void* (*fn)(void*)) {
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, NULL);
  struct e2e_go_start_* start = malloc(sizeof *start);
  if (!start) exit(1);
  start->fn = fn;
  int err = pthread_create(t, NULL, e2e_go_start_, start);
  if (err != 0) {
    e2e_say("FAIL pthread_create: %s", strerror(err));
    exit(1);
  }
}

// The system call thread `tid` of this process sits in (/proc/self/task/TID/syscall), -1 if
// that cannot be read; 0 is also "running" there.
static inline long e2e_syscall_of(int tid) {
  char path[64], buf[64] = "";
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
  fclose(f);
  return atol(buf);
}

static inline void e2e_ready(void) {
  e2e_say("READY");
}

// fork() whose child returns only once a byte arrives on the pipe whose write end the parent
// gets in *release (the child returns 0, the parent the child's PID).
static inline pid_t e2e_fork_held(int* release) {
  int p[2];
  E2E_SYS(pipe(p));
  pid_t pid = fork();
  E2E_SYS(pid);
  if (pid == 0) {
    close(p[1]);
    char c;
    while (read(p[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(p[0]);
    return 0;
  }
  close(p[0]);
  *release = p[1];
  return pid;
}

// Checks that fd `fd` of this process links to `want` in /proc/self/fd.
static inline void e2e_check_link(int fd, const char* want) {
  char path[64], link[256] = "";
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n > 0) link[n] = 0;
  E2E_CHECK(strcmp(link, want) == 0, "fd %d is '%s', want '%s'", fd, link, want);
}

// The /proc/PID/ns/KIND link of `pid` ("uts:[4026531838]"), empty when unreadable.
static inline void e2e_ns_link(pid_t pid, const char* kind, char* out, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, kind);
  ssize_t n = readlink(path, out, size - 1);
  out[n > 0 ? n : 0] = 0;
}

static inline double e2e_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Waits for SIGUSR2 by sleeping in short steps (the dump usually catches it in nanosleep).
static inline void e2e_wait_go(void) {
  while (!e2e_go) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

// Waits for SIGUSR2 asleep the whole time (no periodic wake-ups): for programs whose test checks
// that a refused dump left them sleeping (S), which a 5 ms nanosleep loop may not be when looked
// at on a loaded machine.
static inline void e2e_sleep_until_go(void) {
  sigset_t usr2, old;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, &old);
  while (!e2e_go) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);
}

static inline int e2e_finish(void) {
  if (e2e_failures == 0) e2e_say("PASS");
  return e2e_failures == 0 ? 0 : 1;
}

// The path of a file in the test's own temporary directory.
static inline const char* e2e_path(const char* name) {
  static char buf[8][4096];
  static int next;
  char* out = buf[next++ % 8];
  const char* dir = getenv("E2E_DIR");
  snprintf(out, 4096, "%s/%s", dir ? dir : ".", name);
  return out;
}

// Spins in user code until the process has used `seconds` more CPU time: a timer on CPU time
// that was restored then shows clearly less than one re-armed with its first value would.
static inline void e2e_burn_cpu(double seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  double until = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + seconds;
  volatile unsigned long sink = 0;
  do {
    for (int i = 0; i < 100000; ++i) sink = sink * 31 + (unsigned long)i;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  } while ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9 < until);
}
