// Memory of every kind a process commonly has, checked after restore: heap, a big anonymous
// mapping, a MAP_GROWSDOWN region, a PROT_NONE guard page, private and shared file mappings,
// the brk area, and the kernel's view of cmdline, environ and exe.
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/mman.h>

#include "e2e_prog.h"

#define PAGE 4096

static unsigned char pattern(size_t i, unsigned seed) {
  return (unsigned char)(i * 131 + seed + (i >> 12));
}

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) p[i] = pattern(i, seed);
}

static size_t first_mismatch(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != pattern(i, seed)) return i;
  return n;
}

static ssize_t read_whole(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t got = 0;
  ssize_t n;
  while (got < cap && (n = read(fd, buf + got, cap - got)) > 0) got += (size_t)n;
  close(fd);
  return (ssize_t)got;
}

static sigjmp_buf segv_jump;
static void on_segv(int sig) {
  (void)sig;
  siglongjmp(segv_jump, 1);
}

static int touching_faults(volatile unsigned char* p) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, &old);
  int faulted = 0;
  if (sigsetjmp(segv_jump, 1) == 0) {
    (void)*p;
  } else {
    faulted = 1;
  }
  sigaction(SIGSEGV, &old, NULL);
  return faulted;
}

static int make_file(const char* name, size_t size, int byte) {
  int fd = open(e2e_path(name), O_RDWR | O_CREAT | O_TRUNC, 0644);
  E2E_SYS(fd);
  char page[PAGE];
  memset(page, byte, sizeof page);
  for (size_t off = 0; off < size; off += PAGE) E2E_SYS(pwrite(fd, page, PAGE, (off_t)off));
  return fd;
}

static int page_is(const unsigned char* p, int byte) {
  for (int i = 0; i < PAGE; ++i)
    if (p[i] != byte) return 0;
  return 1;
}

// argv[1], when given: the big mapping's size in MiB (32 by default).
int main(int argc, char** argv) {
  e2e_setup();
  const size_t BIG = (argc > 1 ? (size_t)atol(argv[1]) : 32) << 20;
  static char cmdline[4096], environ_text[65536], exe[4096];
  ssize_t cmdline_len = read_whole("/proc/self/cmdline", cmdline, sizeof cmdline);
  ssize_t environ_len = read_whole("/proc/self/environ", environ_text, sizeof environ_text);
  ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof exe);

  // Heap: one big block and many small ones.
  unsigned char* heap = malloc(1 << 20);
  fill(heap, 1 << 20, 1);
  unsigned char* small[500];
  for (int i = 0; i < 500; ++i) {
    small[i] = malloc((size_t)(16 + i * 7));
    fill(small[i], (size_t)(16 + i * 7), (unsigned)i);
  }
  // Big anonymous mapping: pattern on every other 64 KiB, the rest never touched.
  unsigned char* big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  E2E_SYS(big == MAP_FAILED ? -1 : 0);
  for (size_t off = 0; off < BIG; off += 128 << 10)
    fill(big + off, 64 << 10, (unsigned)(off >> 16));
  // A stack-like region that grows down.
  unsigned char* grows = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
  E2E_SYS(grows == MAP_FAILED ? -1 : 0);
  fill(grows, 16 * PAGE, 77);
  // Three pages with a PROT_NONE guard in the middle.
  unsigned char* guarded =
      mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  E2E_SYS(guarded == MAP_FAILED ? -1 : 0);
  memset(guarded, 'g', 3 * PAGE);
  E2E_SYS(mprotect(guarded + PAGE, PAGE, PROT_NONE));
  // Private file mapping with one page changed (copy on write: the file keeps 'A').
  int priv_fd = make_file("private.dat", 3 * PAGE, 'A');
  unsigned char* priv = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, priv_fd, 0);
  E2E_SYS(priv == MAP_FAILED ? -1 : 0);
  close(priv_fd);
  memset(priv + PAGE, 'B', PAGE);
  // Shared file mapping written before the dump, never msync'ed.
  int shared_fd = make_file("shared.dat", 2 * PAGE, 0);
  unsigned char* shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd, 0);
  E2E_SYS(shared == MAP_FAILED ? -1 : 0);
  close(shared_fd);
  memset(shared, 'S', PAGE);
  // brk area.
  void* brk_start = sbrk(0);
  unsigned char* brk_area = sbrk(64 * 1024);
  E2E_SYS(brk_area == (void*)-1 ? -1 : 0);
  fill(brk_area, 64 * 1024, 99);
  void* brk_end = sbrk(0);

  e2e_ready();
  e2e_wait_go();

  E2E_CHECK(first_mismatch(heap, 1 << 20, 1) == 1 << 20, "heap block differs at %zu",
            first_mismatch(heap, 1 << 20, 1));
  for (int i = 0; i < 500; ++i)
    E2E_CHECK(first_mismatch(small[i], (size_t)(16 + i * 7), (unsigned)i) == (size_t)(16 + i * 7),
              "small heap block %d differs", i);
  for (size_t off = 0; off < BIG; off += 64 << 10) {
    int touched = (off % (128 << 10)) == 0;
    if (touched) {
      E2E_CHECK(first_mismatch(big + off, 64 << 10, (unsigned)(off >> 16)) == 64 << 10,
                "big mapping differs in chunk at %zu", off);
    } else {
      int zero = 1;
      for (size_t i = 0; i < (64 << 10); ++i) zero &= big[off + i] == 0;
      E2E_CHECK(zero, "untouched part of the big mapping at %zu is not zero", off);
    }
  }
  E2E_CHECK(first_mismatch(grows, 16 * PAGE, 77) == 16 * PAGE, "MAP_GROWSDOWN region differs");
  E2E_CHECK(page_is(guarded, 'g') && page_is(guarded + 2 * PAGE, 'g'),
            "pages around the guard differ");
  E2E_CHECK(touching_faults(guarded + PAGE), "the PROT_NONE guard page is accessible");
  E2E_CHECK(page_is(priv, 'A') && page_is(priv + PAGE, 'B') && page_is(priv + 2 * PAGE, 'A'),
            "private file mapping content differs");
  unsigned char filebuf[PAGE];
  int fd = open(e2e_path("private.dat"), O_RDONLY);
  E2E_CHECK(fd >= 0 && pread(fd, filebuf, PAGE, PAGE) == PAGE && page_is(filebuf, 'A'),
            "private mapping's change leaked into the file");
  close(fd);
  fd = open(e2e_path("shared.dat"), O_RDWR);
  E2E_CHECK(fd >= 0 && pread(fd, filebuf, PAGE, 0) == PAGE && page_is(filebuf, 'S'),
            "shared.dat does not hold what was written to the shared mapping before the dump");
  E2E_CHECK(page_is(shared, 'S'), "shared mapping content differs");
  memset(shared + PAGE, 'T', PAGE);
  E2E_CHECK(pread(fd, filebuf, PAGE, PAGE) == PAGE && page_is(filebuf, 'T'),
            "shared mapping is no longer shared with the file after restore");
  close(fd);
  E2E_CHECK(sbrk(0) == brk_end, "brk moved: %p, was %p", sbrk(0), brk_end);
  E2E_CHECK(first_mismatch(brk_area, 64 * 1024, 99) == 64 * 1024, "brk area differs");
  unsigned char* more = sbrk(PAGE);
  E2E_CHECK(more == brk_end, "brk cannot grow on from where it was (got %p)", (void*)more);
  if (more != (void*)-1) memset(more, 1, PAGE);
  (void)brk_start;

  static char cmdline2[4096], environ2[65536], exe2[4096];
  E2E_CHECK(read_whole("/proc/self/cmdline", cmdline2, sizeof cmdline2) == cmdline_len &&
                memcmp(cmdline, cmdline2, (size_t)cmdline_len) == 0,
            "/proc/self/cmdline changed");
  E2E_CHECK(read_whole("/proc/self/environ", environ2, sizeof environ2) == environ_len &&
                memcmp(environ_text, environ2, (size_t)environ_len) == 0,
            "/proc/self/environ changed");
  E2E_CHECK(readlink("/proc/self/exe", exe2, sizeof exe2) == exe_len &&
                memcmp(exe, exe2, (size_t)exe_len) == 0,
            "/proc/self/exe changed");
  return e2e_finish();
}
