// A deleted file mapped MAP_PRIVATE and changed (issue 11, point 7): after the restore the
// mapping reads the file's contents where the process did not write and its own changes where
// it did, and it is still a view of the one deleted file the process holds open: a later write
// to the file shows in the pages the process never changed, never in those it did.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "e2e_prog.h"

#define PAGE 4096
#define SIZE (4 * PAGE)

int main(void) {
  e2e_setup();
  const char* path = e2e_path("private.bin");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  E2E_SYS(fd);
  static char data[SIZE];
  for (int i = 0; i < SIZE; ++i) data[i] = (char)('a' + i % 23);
  E2E_CHECK(write(fd, data, SIZE) == SIZE, "write: %s", strerror(errno));
  char* p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  E2E_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
  if (p == MAP_FAILED) return e2e_finish();
  E2E_SYS(unlink(path));
  memcpy(p + PAGE + 10, "private change", 14);       // page 1: the process's own copy
  E2E_SYS(pwrite(fd, "file change", 11, 2 * PAGE));  // page 2: read from the file
  e2e_ready();
  e2e_wait_go();

  E2E_CHECK(memcmp(p, data, PAGE) == 0, "page 0 differs from the file");
  E2E_CHECK(memcmp(p + PAGE + 10, "private change", 14) == 0, "the private change is lost");
  E2E_CHECK(memcmp(p + PAGE, data + PAGE, 10) == 0, "page 1 lost the file's bytes around it");
  E2E_CHECK(memcmp(p + 2 * PAGE, "file change", 11) == 0, "page 2 lost the file's change");
  char back[14] = {0};
  E2E_CHECK(pread(fd, back, 14, PAGE + 10) == 14 && memcmp(back, data + PAGE + 10, 14) == 0,
            "the private change reached the file");
  // Pages the process never wrote still follow the file.
  E2E_SYS(pwrite(fd, "later", 5, 3 * PAGE + 100));
  E2E_CHECK(memcmp(p + 3 * PAGE + 100, "later", 5) == 0,
            "a write to the file after the restore is not seen in the private mapping");
  E2E_SYS(pwrite(fd, "again", 5, PAGE + 10));
  E2E_CHECK(memcmp(p + PAGE + 10, "private change", 14) == 0,
            "a write to the file replaced the private change");
  struct stat st;
  E2E_SYS(fstat(fd, &st));
  E2E_CHECK(st.st_nlink == 0 && st.st_size == SIZE, "file: %lu links, %lld bytes",
            (unsigned long)st.st_nlink, (long long)st.st_size);
  return e2e_finish();
}
