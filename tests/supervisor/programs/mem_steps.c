// A single-threaded program whose state is its memory: MIB MiB of pages, each holding words
// derived from (page, step). Every step visits every page in a different order, checks that it
// holds the words of the step before and writes those of the next one. A page that comes back
// wrong after a restore (missing, zero, from another checkpoint) makes it exit 3 naming the page.
// It prints "filled" once its pages are first written, and "done STEPS steps" at the end.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t value(uint64_t page, uint64_t step) {
  return mix(page * 1000003u + step);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: mem_steps MIB STEPS\n");
    return 2;
  }
  uint64_t pages = (uint64_t)atol(argv[1]) * 256;  // a power of two: odd strides visit all
  long steps = atol(argv[2]);
  uint64_t* mem =
      mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 2;
  for (uint64_t p = 0; p < pages; ++p) {
    uint64_t* w = mem + p * WORDS;
    w[0] = w[WORDS / 2] = w[WORDS - 1] = value(p, 0);
  }
  printf("filled\n");
  fflush(stdout);
  struct timespec pause = {0, 20 * 1000 * 1000};
  for (long s = 0; s < steps; ++s) {
    uint64_t stride = (mix((uint64_t)s) | 1) % pages | 1, start = mix((uint64_t)s + 7) % pages;
    for (uint64_t i = 0; i < pages; ++i) {
      uint64_t p = (start + i * stride) % pages;
      uint64_t* w = mem + p * WORDS;
      uint64_t want = value(p, (uint64_t)s);
      if (w[0] != want || w[WORDS / 2] != want || w[WORDS - 1] != want) {
        fprintf(stderr, "mem_steps: page %lu holds %#lx, not %#lx (step %ld)\n", (unsigned long)p,
                (unsigned long)w[0], (unsigned long)want, s);
        return 3;
      }
      w[0] = w[WORDS / 2] = w[WORDS - 1] = value(p, (uint64_t)s + 1);
    }
    nanosleep(&pause, NULL);
  }
  printf("done %ld steps\n", steps);
  return 0;
}
