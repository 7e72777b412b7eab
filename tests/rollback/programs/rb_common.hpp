#pragma once
// What the rollback scenario programs share: CHECK, PASS, the persisted `phase`, faults.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/rollback.h"
#include "ckpt/rollback.hpp"

namespace rbprog {

#define CHECK(c)                     \
  do {                               \
    if (!(c)) fail_at(__LINE__, #c); \
  } while (0)

[[noreturn]] inline void fail_at(int line, const char* what) {
  dprintf(2, "FAIL line %d: %s (errno %d %s; %s)\n", line, what, errno, strerror(errno),
          ckpt_rollback_error());
  _exit(1);
}

[[noreturn]] inline void pass() {
  dprintf(1, "PASS\n");
  _exit(0);
}

inline int phase;  // persisted by every scenario

inline void persist_phase() {
  CHECK(persist(&phase, sizeof phase) == 0);
}

inline pid_t gettid_() {
  return static_cast<pid_t>(syscall(SYS_gettid));
}

inline bool thread_exists(pid_t tid) {
  return access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) == 0;
}

// pthread_join returns when the kernel clears the thread's tid, which happens before the
// kernel releases the task: /proc/self/task/<tid> may stay a moment longer.
inline bool thread_gone(pid_t tid) {
  for (int i = 0; i < 2000; ++i) {
    if (!thread_exists(tid)) return true;
    usleep(1000);
  }
  return false;
}

inline int count_threads() {
  int n = 0;
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "Threads:", 8) == 0) n = atoi(line + 8);
  if (f) fclose(f);
  return n;
}

inline void on_fault(int) {
  tlongjmp(0);
  dprintf(2, "tlongjmp failed in the handler: %s\n", ckpt_rollback_error());
  _exit(3);
}

inline void catch_faults(int flags = 0) {
  struct sigaction sa {};
  sa.sa_handler = on_fault;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGABRT}) CHECK(sigaction(sig, &sa, nullptr) == 0);
}

inline volatile int* volatile g_nowhere;  // NULL, as the compiler cannot prove

[[noreturn]] inline void segfault() {
  *g_nowhere = 1;
  CHECK(!"no SIGSEGV");
}

inline volatile int g_numerator = 7;

[[noreturn]] inline void divide_by_zero() {
  volatile int zero = 0;
  volatile int r = g_numerator / zero;
  (void)r;
  CHECK(!"no SIGFPE");
}

inline void sleep_ms(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

struct Scenario {
  const char* name;
  void (*run)();
};

// Runs the scenario named by argv[1]; exits 2 with a usage line when there is none.
template <size_t N>
int run_scenario(const Scenario (&all)[N], int argc, char** argv) {
  if (argc == 2) {
    for (auto& s : all) {
      if (std::string_view(argv[1]) == s.name) {
        s.run();
        return 1;
      }
    }
  }
  dprintf(2, "usage: %s SCENARIO\n", argv[0]);
  return 2;
}

}  // namespace rbprog
