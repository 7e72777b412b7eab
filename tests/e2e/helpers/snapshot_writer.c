// Writes its memory without pause while being dumped with the short freeze, and checks itself:
// - a region of MIB MiB is rewritten page after page, sweep after sweep; every page carries its
//   sweep number, and before a page is rewritten it must hold exactly the previous sweep's
//   values. A restored image whose pages were copied at different moments (some after the
//   program went on) holds a page of a later sweep ahead of the cursor, and fails this check.
// - shared anonymous, MADV_DONTFORK and MADV_WIPEONFORK areas hold patterns checked at the end.
// - it has one child (asleep), a thread blocked in waitid(P_ALL, __WALL) and checks with
//   waitid/waitpid(WNOHANG) in the writing loop, and counts SIGCHLD: no extra child, no signal,
//   no EINTR may show up during dumps.
// - two more areas become MADV_WIPEONFORK and MADV_DONTFORK on SIGUSR1, whenever a test sends it
//   (just before a dump freezes it: a change of flags that no line of /proc/PID/maps shows); it
//   prints ADVISED in the next sweep.
// Prints "SWEEP N" after each sweep; on SIGUSR2 checks the rest and prints PASS or FAIL lines.
// Usage: snapshot_writer [MIB [PAUSE_US]]: PAUSE_US microseconds of sleep after each page written
// (0: none) make a writer whose pages are not nearly all rewritten while a pre-copy runs.
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define PAGE 4096
#define WORDS (PAGE / 8)
#define AREA (2 << 20)

static volatile uint64_t* region;
static size_t pages;
static volatile long bad_pages, extra_children, sigchld_seen, eintr_seen;
static volatile sig_atomic_t finishing;
static pid_t sleeper;
static long pause_us;
static unsigned char *late_wipe, *late_dontfork;
static volatile sig_atomic_t advised;

static void on_advise(int sig) {
  (void)sig;
  if (madvise(late_wipe, AREA, MADV_WIPEONFORK) == 0 &&
      madvise(late_dontfork, AREA, MADV_DONTFORK) == 0)
    advised = 1;
}

static uint64_t word(uint64_t sweep, uint64_t page, uint64_t k) {
  return (sweep << 40) ^ (page << 12) ^ k ^ 0x5a5a000000000000ull;
}

static void on_sigchld(int sig) {
  (void)sig;
  if (!finishing) ++sigchld_seen;
}

static void fill(unsigned char* p, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; ++i) p[i] = (unsigned char)(i * 131 + seed);
}

static int holds(const unsigned char* p, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; ++i)
    if (p[i] != (unsigned char)(i * 131 + seed)) return 0;
  return 1;
}

static void* area(int flags, int advice, unsigned seed) {
  void* p = mmap(NULL, AREA, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    e2e_say("FAIL mmap: %s", strerror(errno));
    exit(1);
  }
  fill(p, AREA, seed);
  if (advice >= 0) E2E_SYS(madvise(p, AREA, advice));
  return p;
}

// An area between two inaccessible pages, so that it is a mapping of its own: madvise() on it
// then splits nothing, and /proc/PID/maps shows no change.
static unsigned char* lone_area(unsigned seed) {
  unsigned char* p = mmap(NULL, AREA + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || mprotect(p + PAGE, AREA, PROT_READ | PROT_WRITE) != 0) {
    e2e_say("FAIL mmap: %s", strerror(errno));
    exit(1);
  }
  fill(p + PAGE, AREA, seed);
  return p + PAGE;
}

static void* waiter(void* arg) {
  (void)arg;
  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_ALL, 0, &si, WEXITED | __WALL | WNOWAIT);
    if (finishing) return NULL;
    if (r < 0 && errno == EINTR)
      ++eintr_seen;
    else
      ++extra_children;
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static void look_for_children(void) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WCONTINUED | WNOHANG | __WALL | WNOWAIT);
  if (r < 0 || si.si_pid != 0) ++extra_children;
  if (waitpid(-1, NULL, WNOHANG) != 0) ++extra_children;
}

static void sweep(uint64_t s) {
  for (size_t i = 0; i < pages; ++i) {
    volatile uint64_t* p = region + i * WORDS;
    if (s > 0) {
      for (size_t k = 0; k < WORDS; ++k)
        if (p[k] != word(s - 1, i, k)) {
          if (bad_pages < 5)
            e2e_say("page %zu word %zu: %#llx, want sweep %llu", i, k, (unsigned long long)p[k],
                    (unsigned long long)(s - 1));
          ++bad_pages;
          break;
        }
    }
    for (size_t k = 0; k < WORDS; ++k) p[k] = word(s, i, k);
    if (i % 256 == 0) look_for_children();
    if (pause_us > 0) {
      struct timespec ts = {0, pause_us * 1000};
      nanosleep(&ts, NULL);
    }
  }
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  pause_us = argc > 2 ? atol(argv[2]) : 0;
  e2e_setup();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  E2E_SYS(sigaction(SIGCHLD, &sa, NULL));
  pages = mib * 256;
  region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) return 1;
  // Before the areas: a shared area mapped by two processes of a tree is refused.
  sleeper = fork();
  if (sleeper == 0) {
    for (;;) pause();
  }
  unsigned char* shared = area(MAP_SHARED, -1, 1);
  unsigned char* dontfork = area(MAP_PRIVATE, MADV_DONTFORK, 2);
  unsigned char* wipe = area(MAP_PRIVATE, MADV_WIPEONFORK, 3);
  late_wipe = lone_area(4);
  late_dontfork = lone_area(5);
  sa.sa_handler = on_advise;
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  pthread_t t;
  e2e_thread(&t, waiter, NULL);
  sweep(0);
  e2e_ready();
  uint64_t s = 1;
  int said_advised = 0;
  while (!e2e_go) {
    sweep(s);
    if (advised && !said_advised) {
      said_advised = 1;
      e2e_say("ADVISED");
    }
    e2e_say("SWEEP %llu", (unsigned long long)s);
    ++s;
  }
  finishing = 1;
  E2E_CHECK(bad_pages == 0, "%ld pages did not hold the previous sweep", bad_pages);
  E2E_CHECK(extra_children == 0, "an extra child was seen %ld times", extra_children);
  E2E_CHECK(sigchld_seen == 0, "%ld SIGCHLD", sigchld_seen);
  E2E_CHECK(eintr_seen == 0, "%ld EINTR in waitid", eintr_seen);
  E2E_CHECK(holds(shared, AREA, 1), "the shared area changed");
  E2E_CHECK(holds(dontfork, AREA, 2), "the MADV_DONTFORK area changed");
  E2E_CHECK(holds(wipe, AREA, 3), "the MADV_WIPEONFORK area changed");
  E2E_CHECK(holds(late_wipe, AREA, 4), "the area made MADV_WIPEONFORK on SIGUSR1 changed");
  E2E_CHECK(holds(late_dontfork, AREA, 5), "the area made MADV_DONTFORK on SIGUSR1 changed");
  kill(sleeper, SIGKILL);
  pthread_join(t, NULL);
  E2E_SYS(waitpid(sleeper, NULL, 0));
  return e2e_finish();
}
