// Memory a parent shares copy-on-write with the children it forked stays shared after the restore
// (issue 11, point 5): a forked server's workers must not each get a copy. The root fills 32 MiB
// and forks three workers; each worker changes one page of its own; the root then fills a second
// area, which the workers never touched. Before the dump and after the restore every process has
// the 32 MiB shared (smaps Shared_Dirty) and almost nothing of it private; each sees exactly its
// own contents (its changed page, the root's words elsewhere, zeros in the second area for a
// worker); and a page the root writes after the restore is not seen by the workers. The same
// holds for a file mapped privately: pages the root wrote before forking stay shared, pages it
// wrote after are its own, and the workers read the file's bytes there.
// With argv[1] "copied" (a restore told not to share: stored_once_test.cpp) the pages need not be
// shared after the restore; every content check stays.
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define PAGE 4096
#define AREA (32 << 20)
#define WORKERS 3

#define FILE_PAGES 64

static uint64_t* area;
static unsigned char *later, *file;
static int check[2], go[2], ready[2];  // root to workers (twice), workers to root
static int shared_after = 1;           // the restore shares the pages again

static uint64_t word(size_t i) {
  return (uint64_t)i * 0x9E3779B97F4A7C15ull + 1;
}

static size_t own_page(int worker) {
  return (size_t)(worker + 1) * 100;
}

// Shared_Dirty and Private_Dirty (kB) of the mapping that starts at `addr`.
static void dirty_kb(const void* addr, long* shared, long* private_) {
  *shared = *private_ = -1;
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return;
  char line[512], head[32];
  snprintf(head, sizeof head, "%lx-", (unsigned long)addr);
  int in = 0;
  while (fgets(line, sizeof line, f)) {
    if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' '))
      in = strncmp(line, head, strlen(head)) == 0;
    if (!in) continue;
    sscanf(line, "Shared_Dirty: %ld", shared);
    sscanf(line, "Private_Dirty: %ld", private_);
  }
  fclose(f);
}

static void check_shared(const char* who, const char* when) {
  if (!shared_after && strcmp(when, "after the restore") == 0) return;
  long shared, private_;
  dirty_kb(area, &shared, &private_);
  E2E_CHECK(shared >= (AREA >> 10) - 2048 && private_ >= 0 && private_ <= 2048,
            "%s %s: %ld kB of the area shared, %ld kB private", who, when, shared, private_);
  dirty_kb(file, &shared, &private_);
  E2E_CHECK(shared >= 32 * PAGE / 1024, "%s %s: %ld kB of the file's written pages shared", who,
            when, shared);
}

// The file's pages: written by the root before the fork ('r'), after it ('R', the root's own),
// or the file's bytes ('f').
static void check_file(int worker, const char* who) {
  size_t wrong = 0;
  for (size_t i = 0; i < FILE_PAGES * PAGE; ++i) {
    size_t page = i / PAGE;
    char want = page < 32 ? 'r' : page < 48 && worker < 0 ? 'R' : 'f';
    wrong += file[i] != want;
  }
  E2E_CHECK(wrong == 0, "%s: %zu bytes of the privately mapped file are wrong", who, wrong);
}

// Every word as the root wrote it, but the worker's own page; the second area as `me` has it.
static void check_contents(int worker, const char* who) {
  size_t bad = 0;
  for (size_t i = 0; i < AREA / sizeof(uint64_t); ++i) {
    size_t page = i * sizeof(uint64_t) / PAGE;
    uint64_t want =
        worker >= 0 && page == own_page(worker) ? 0x5757575757575700ull + worker : word(i);
    if (area[i] != want) ++bad;
  }
  E2E_CHECK(bad == 0, "%s: %zu words of the area differ", who, bad);
  unsigned char want = worker >= 0 ? 0 : 0x5a;
  size_t wrong = 0;
  for (size_t i = 0; i < 4 * PAGE; ++i) wrong += later[i] != want;
  E2E_CHECK(wrong == 0, "%s: %zu bytes of the second area are not %#x", who, wrong, want);
}

__attribute__((noreturn)) static void worker_main(int worker) {
  char name[16];
  snprintf(name, sizeof name, "worker %d", worker);
  uint64_t* mine = area + own_page(worker) * PAGE / sizeof(uint64_t);
  for (size_t i = 0; i < PAGE / sizeof(uint64_t); ++i) mine[i] = 0x5757575757575700ull + worker;
  char c = 0;
  E2E_CHECK(write(ready[1], "r", 1) == 1, "%s: ready: %s", name, strerror(errno));
  E2E_CHECK(read(check[0], &c, 1) == 1 && c == 'c', "%s: check pipe", name);
  check_shared(name, "before the dump");
  E2E_CHECK(write(ready[1], "r", 1) == 1, "%s: checked: %s", name, strerror(errno));
  E2E_CHECK(read(go[0], &c, 1) == 1 && c == 'g', "%s: go pipe after the restore", name);
  check_shared(name, "after the restore");
  check_contents(worker, name);
  check_file(worker, name);
  _exit(e2e_failures ? 1 : 0);
}

int main(int argc, char** argv) {
  e2e_setup();
  shared_after = !(argc > 1 && strcmp(argv[1], "copied") == 0);
  area = mmap(NULL, AREA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  later = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  E2E_CHECK(area != MAP_FAILED && later != MAP_FAILED, "mmap: %s", strerror(errno));
  if (area == MAP_FAILED || later == MAP_FAILED) return e2e_finish();
  // Small pages only: a write to a shared huge page would copy 2 MiB.
  E2E_SYS(madvise(area, AREA, MADV_NOHUGEPAGE));
  for (size_t i = 0; i < AREA / sizeof(uint64_t); ++i) area[i] = word(i);
  int fd = open(e2e_path("data.bin"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  E2E_SYS(fd);
  static char bytes[FILE_PAGES * PAGE];
  memset(bytes, 'f', sizeof bytes);
  E2E_CHECK(write(fd, bytes, sizeof bytes) == (ssize_t)sizeof bytes, "write the file");
  file = mmap(NULL, sizeof bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  E2E_CHECK(file != MAP_FAILED, "mmap the file: %s", strerror(errno));
  if (file == MAP_FAILED) return e2e_finish();
  close(fd);
  memset(file, 'r', 32 * PAGE);
  E2E_SYS(pipe(check));
  E2E_SYS(pipe(go));
  E2E_SYS(pipe(ready));
  pid_t workers[WORKERS];
  for (int w = 0; w < WORKERS; ++w) {
    workers[w] = fork();
    E2E_SYS(workers[w]);
    if (workers[w] == 0) worker_main(w);
  }
  memset(later, 0x5a, 4 * PAGE);
  memset(file + 32 * PAGE, 'R', 16 * PAGE);
  char c;
  for (int i = 0; i < WORKERS; ++i) E2E_CHECK(read(ready[0], &c, 1) == 1, "a worker is not ready");
  check_shared("root", "before the dump");
  E2E_CHECK(write(check[1], "ccc", WORKERS) == WORKERS, "start the checks: %s", strerror(errno));
  for (int i = 0; i < WORKERS; ++i) E2E_CHECK(read(ready[0], &c, 1) == 1, "a worker is not done");
  e2e_ready();
  e2e_wait_go();

  check_shared("root", "after the restore");
  check_contents(-1, "root");
  check_file(-1, "root");
  // A write by the root now stays the root's (its page 7 is checked as the root's words above).
  for (size_t i = 0; i < PAGE / sizeof(uint64_t); ++i) area[7 * PAGE / sizeof(uint64_t) + i] = 0;
  E2E_CHECK(write(go[1], "ggg", WORKERS) == WORKERS, "wake the workers: %s", strerror(errno));
  for (int w = 0; w < WORKERS; ++w) {
    int st = 0;
    E2E_CHECK(waitpid(workers[w], &st, 0) == workers[w] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "worker %d ended with status %#x", w, st);
  }
  return e2e_finish();
}
