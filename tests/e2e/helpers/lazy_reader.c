// Reads and changes its memory without pause, so that after a lazy restore it does so while its
// pages are still arriving: every round it checks random pages of a large area in random order,
// drops an area with MADV_DONTNEED (it must read zeros, not the image's pages), moves an area
// with mremap and checks it at its new place, and forks a child that checks random pages of its
// own copy. Usage: lazy_reader MIB [PAUSE_MS]. Prints READY, then "ROUND n" lines; on SIGUSR2
// prints PASS (or FAIL lines) and exits. SIGUSR1 stops the forks (it prints QUIET) until a round
// finds it was stopped for more than PAUSE_MS (300: a dump and restore): a test dumps it without a
// child, and the restored process forks again while its pages are still arriving. A test that
// needs it quiet across a leave-running dump gives a pause no dump's freeze reaches, even on a
// loaded machine.
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define PAGE 4096u
#define SMALL (64u * PAGE)

static volatile sig_atomic_t quiet_asked;
static void on_quiet(int sig) {
  (void)sig;
  quiet_asked = 1;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

// The value each page of an area holds: its index and the area's tag, in every word.
static void fill(unsigned char* area, size_t pages, uint64_t tag) {
  for (size_t i = 0; i < pages; ++i) {
    uint64_t* w = (uint64_t*)(area + i * PAGE);
    for (size_t k = 0; k < PAGE / 8; ++k) w[k] = (tag << 32) ^ (i * 2654435761u) ^ k;
  }
}

static int page_ok(const unsigned char* area, size_t i, uint64_t tag) {
  const uint64_t* w = (const uint64_t*)(area + i * PAGE);
  for (size_t k = 0; k < PAGE / 8; ++k)
    if (w[k] != ((tag << 32) ^ (i * 2654435761u) ^ k)) return 0;
  return 1;
}

static int zero_page(const unsigned char* p) {
  for (size_t k = 0; k < PAGE; ++k)
    if (p[k]) return 0;
  return 1;
}

int main(int argc, char** argv) {
  e2e_setup();
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  size_t pages = mib * 256;
  double pause_ms = argc > 2 ? atof(argv[2]) : 300;
  unsigned char* big =
      mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char* dropped =
      mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  // Two places for the moving area: it goes back and forth between them.
  unsigned char* places = mmap(NULL, 2 * SMALL, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (big == MAP_FAILED || dropped == MAP_FAILED || places == MAP_FAILED) {
    e2e_say("FAIL mmap: %s", strerror(errno));
    return 1;
  }
  unsigned char* moving =
      mmap(places, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  E2E_SYS(munmap(places + SMALL, SMALL));
  fill(big, pages, 1);
  fill(dropped, SMALL / PAGE, 2);
  fill(moving, SMALL / PAGE, 3);
  signal(SIGUSR1, on_quiet);
  int quiet = 0;
  double last = now_ms();
  e2e_say("READY");
  for (unsigned long round = 0; !e2e_go; ++round) {
    double t = now_ms();
    if (quiet && t - last > pause_ms) {
      quiet = 0;
      e2e_say("LOUD");
    }
    if (quiet_asked && !quiet) {
      quiet_asked = 0;
      quiet = 1;
      e2e_say("QUIET");
    }
    last = t;
    for (int n = 0; n < 512; ++n) {
      size_t i = next_random() % pages;
      E2E_CHECK(page_ok(big, i, 1), "round %lu: page %zu of the big area", round, i);
    }
    // Dropped pages read zeros, whatever the image held for them; then they are written again.
    E2E_SYS(madvise(dropped, SMALL, MADV_DONTNEED));
    for (size_t i = 0; i < SMALL / PAGE; ++i)
      E2E_CHECK(zero_page(dropped + i * PAGE), "round %lu: dropped page %zu is not zero", round, i);
    fill(dropped, SMALL / PAGE, 2);
    unsigned char* to = moving == places ? places + SMALL : places;
    unsigned char* moved = mremap(moving, SMALL, SMALL, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (moved == MAP_FAILED) {
      e2e_say("FAIL mremap: %s", strerror(errno));
      return 1;
    }
    moving = moved;
    for (size_t i = 0; i < SMALL / PAGE; ++i)
      E2E_CHECK(page_ok(moving, i, 3), "round %lu: moved page %zu", round, i);
    pid_t child = quiet ? -2 : fork();
    if (child == 0) {
      int bad = 0;
      for (int n = 0; n < 256; ++n) {
        size_t i = next_random() % pages;
        if (!page_ok(big, i, 1)) ++bad;
      }
      _exit(bad ? 1 : 0);
    }
    if (child != -2) {
      int status = 0;
      E2E_SYS(child);
      pid_t got;
      while ((got = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
      }
      E2E_SYS(got);
      E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "round %lu: a forked child read wrong pages (status %d)", round, status);
    }
    if (round % 16 == 0) e2e_say("ROUND %lu", round);
    struct timespec pause_for = {0, 2000000};
    nanosleep(&pause_for, NULL);
  }
  for (size_t i = 0; i < pages; ++i)
    E2E_CHECK(page_ok(big, i, 1), "at the end: page %zu of the big area", i);
  if (e2e_failures == 0) e2e_say("PASS");
  return e2e_failures ? 1 : 0;
}
