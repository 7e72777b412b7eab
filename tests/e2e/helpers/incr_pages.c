// Memory for incremental dumps: MiB given on the command line, every page filled from its number
// and its version. Each SIGUSR1 starts a new epoch that rewrites a few pages with it and prints
// "EPOCH N"; SIGUSR2 checks that every page holds what its version says, prints "AT EPOCH N" and
// PASS. A restore that mixed pages of two generations, or gave an older state, fails the check
// or prints an older epoch.
#include <stdint.h>
#include <sys/mman.h>

#include "e2e_prog.h"

#define PAGE 4096
#define CHANGED_PER_EPOCH 8

static volatile sig_atomic_t next_epoch;

static void on_usr1(int sig) {
  (void)sig;
  next_epoch = 1;
}

static uint64_t word(size_t page, uint32_t version, size_t i) {
  return ((uint64_t)page << 32) ^ ((uint64_t)version << 20) ^ (i * 0x9e3779b97f4a7c15ull);
}

static void fill(uint64_t* p, size_t page, uint32_t version) {
  for (size_t i = 0; i < PAGE / 8; ++i) p[i] = word(page, version, i);
}

int main(int argc, char** argv) {
  e2e_setup();
  size_t pages = (size_t)atol(argc > 1 ? argv[1] : "16") * 256;
  uint8_t* mem =
      mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint32_t* version = calloc(pages, sizeof *version);
  if (mem == MAP_FAILED || !version) return 1;
  for (size_t i = 0; i < pages; ++i) fill((uint64_t*)(mem + i * PAGE), i, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  uint32_t epoch = 0;
  e2e_ready();
  while (!e2e_go) {
    if (next_epoch) {
      next_epoch = 0;
      ++epoch;
      for (size_t j = 0; j < CHANGED_PER_EPOCH; ++j) {
        size_t page = (epoch * 7919u + j * 104729u) % pages;
        version[page] = epoch;
        fill((uint64_t*)(mem + page * PAGE), page, epoch);
      }
      e2e_say("EPOCH %u", epoch);
    }
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  size_t bad = 0;
  for (size_t i = 0; i < pages; ++i) {
    const uint64_t* p = (const uint64_t*)(mem + i * PAGE);
    for (size_t k = 0; k < PAGE / 8; ++k) {
      if (p[k] != word(i, version[i], k)) {
        if (bad++ < 5) e2e_say("FAIL page %zu does not hold version %u", i, version[i]);
        break;
      }
    }
  }
  E2E_CHECK(bad == 0, "%zu pages wrong", bad);
  e2e_say("AT EPOCH %u", epoch);
  return e2e_finish();
}
