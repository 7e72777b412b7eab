// A program whose memory changes in every way write tracking must not miss (resources/
// write_tracking.hpp), a step at a time, and which checks after each step that ALL of it holds
// exactly what the steps so far made of it, recomputed from the step number alone (with 64 MiB
// written once at the start and never again, so that few of its pages change between two
// checkpoints):
//   - a few pages of region A written each step (most pages never change: what tracking skips);
//   - every 3rd step, 4 pages of A dropped with MADV_DONTNEED and read again (the zero page, with
//     the protection of the pages dropped kept by the kernel);
//   - every 4th step, region B moved away with mremap, written there, and moved back;
//   - every 5th step, region C unmapped and mapped again at the same place, with new contents;
//   - every step, the heap grown by a page (brk) and that page written.
// It also checks that it holds as many file descriptors as at its start (ckpt's userfaultfd must
// never stay in it). `mem_moves MAX_STEPS`: prints "started", "step N" after each step, and
// "done N steps" and exits 0 after a SIGTERM (ending the step under way) or MAX_STEPS steps; a
// wrong word prints "BAD ..." and exits 3. Its end is the test's to say, not a step count: under a
// pre-copying supervisor the program runs on through every checkpoint, as many steps as a
// checkpoint lasts.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define A_PAGES 2048UL  // 8 MiB
#define B_PAGES 16UL
#define C_PAGES 16UL
#define D_PAGES 16384UL  // 64 MiB

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static volatile uint64_t *a, *b, *c, *d;
static uint64_t* spare;  // where B goes while it is moved
static char* heap0;

static uint64_t written_page(long s, int k) {
  return mix((uint64_t)s * 2 + (uint64_t)k) % A_PAGES;
}
static uint64_t dropped_page(long s) {
  return mix((uint64_t)s + 0x55) % (A_PAGES - 4);
}

// What word 0 of page p of A holds after step s: the step that last wrote it, 0 if it was last
// dropped, else its first value.
static uint64_t want_a(uint64_t p, long s) {
  for (long t = s; t >= 1; --t) {
    if (t % 3 == 0 && p >= dropped_page(t) && p < dropped_page(t) + 4) return 0;  // after writes
    if (written_page(t, 0) == p || written_page(t, 1) == p) return (uint64_t)t;
  }
  return mix(p);
}
static uint64_t want_b(long s) {
  return s >= 4 ? (uint64_t)(s / 4 * 4) : 7;
}
static uint64_t want_c(uint64_t p, long s) {
  return mix(p + (uint64_t)(s / 5 * 5) * 977);
}

// Without malloc: the heap is the program's own (sbrk) and must not move under it.
static int count_fds(void) {
  static char buf[8192];
  int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
  if (fd < 0) return -1;
  long got;
  while ((got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
    for (long at = 0; at < got; at += ((struct dirent64*)(buf + at))->d_reclen) ++n;
  close(fd);
  return n;
}

static void fill_c(long s) {
  for (uint64_t p = 0; p < C_PAGES; ++p) c[p * PAGE / 8] = want_c(p, s);
}

static int check(long s, int fds) {
  for (uint64_t p = 0; p < A_PAGES; ++p)
    if (a[p * PAGE / 8] != want_a(p, s)) {
      printf("BAD step %ld: A page %lu holds %lu, not %lu\n", s, p, (unsigned long)a[p * PAGE / 8],
             (unsigned long)want_a(p, s));
      return 0;
    }
  for (uint64_t p = 0; p < B_PAGES; ++p)
    if (b[p * PAGE / 8] != (p == 0 ? want_b(s) : 7)) {
      printf("BAD step %ld: B page %lu\n", s, p);
      return 0;
    }
  for (uint64_t p = 0; p < C_PAGES; ++p)
    if (c[p * PAGE / 8] != want_c(p, s)) {
      printf("BAD step %ld: C page %lu\n", s, p);
      return 0;
    }
  for (uint64_t p = 0; p < D_PAGES; ++p)
    if (d[p * PAGE / 8] != mix(p + 99)) {
      printf("BAD step %ld: D page %lu\n", s, p);
      return 0;
    }
  for (long t = 1; t <= s; ++t)
    if (heap0[(t - 1) * PAGE] != (char)t) {
      printf("BAD step %ld: heap page %ld\n", s, t);
      return 0;
    }
  if (count_fds() != fds) {
    printf("BAD step %ld: %d fds, not %d\n", s, count_fds(), fds);
    return 0;
  }
  return 1;
}

static volatile sig_atomic_t stop;
static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static void step(long s) {
  a[written_page(s, 0) * PAGE / 8] = (uint64_t)s;
  a[written_page(s, 1) * PAGE / 8] = (uint64_t)s;
  if (s % 3 == 0) {
    volatile uint64_t* d = a + dropped_page(s) * PAGE / 8;
    madvise((void*)d, 4 * PAGE, MADV_DONTNEED);
    for (int k = 0; k < 4; ++k) (void)d[k * PAGE / 8];  // the zero page comes in
  }
  if (s % 4 == 0) {
    void* away =
        mremap((void*)b, B_PAGES * PAGE, B_PAGES * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, spare);
    ((volatile uint64_t*)away)[0] = (uint64_t)s;
    mremap(away, B_PAGES * PAGE, B_PAGES * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, (void*)b);
  }
  if (s % 5 == 0) {
    munmap((void*)c, C_PAGES * PAGE);
    mmap((void*)c, C_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
         -1, 0);
    fill_c(s);
  }
  char* page = sbrk((intptr_t)PAGE);
  page[0] = (char)s;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  long steps = atol(argv[1]);
  static char out[4096];
  setvbuf(stdout, out, _IOLBF, sizeof out);  // no malloc (see count_fds)
  int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
  a = mmap(NULL, A_PAGES * PAGE, prot, flags, -1, 0);
  b = mmap(NULL, B_PAGES * PAGE, prot, flags, -1, 0);
  c = mmap(NULL, C_PAGES * PAGE, prot, flags, -1, 0);
  d = mmap(NULL, D_PAGES * PAGE, prot, flags, -1, 0);
  spare = mmap(NULL, B_PAGES * PAGE, PROT_NONE, flags, -1, 0);
  if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED || d == MAP_FAILED ||
      spare == MAP_FAILED)
    return 2;
  for (uint64_t p = 0; p < D_PAGES; ++p) d[p * PAGE / 8] = mix(p + 99);
  for (uint64_t p = 0; p < A_PAGES; ++p) a[p * PAGE / 8] = mix(p);
  for (uint64_t p = 0; p < B_PAGES; ++p) b[p * PAGE / 8] = 7;
  fill_c(0);
  // The heap pages start on a page boundary, one per step.
  char* brk0 = sbrk(0);
  heap0 = brk0 + ((PAGE - (uintptr_t)brk0 % PAGE) % PAGE);
  sbrk(heap0 - brk0);
  int fds = count_fds();
  signal(SIGTERM, on_term);
  printf("started\n");
  fflush(stdout);
  struct timespec pause = {0, 5 * 1000 * 1000};
  long s = 0;
  while (s < steps && !stop) {
    step(++s);
    if (!check(s, fds)) return 3;
    printf("step %ld\n", s);
    fflush(stdout);
    nanosleep(&pause, NULL);
  }
  printf("done %ld steps\n", s);
  return 0;
}
