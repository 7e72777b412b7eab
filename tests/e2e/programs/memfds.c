// Memfds held as descriptors, checked after the restore: one both held and mapped shared (by a
// child too), grown and shrunk-sealed, with a second open file of its own offset and access
// mode; one never allowed sealing, with data around a hole; one sealed against writes and mapped
// read-only. Writes through a descriptor must show in the mappings (one object), the names,
// sizes, offsets and seals must be what they were, and the seals must still hold.
#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define PAGE 4096

static int memfd(const char* name, unsigned flags) {
  return (int)syscall(SYS_memfd_create, name, flags);
}

static int ring, ring_ro, plain, sealed;
static char *ring_map, *sealed_map;

static void make_ring(void) {
  E2E_SYS(ring = memfd("ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  E2E_SYS(ftruncate(ring, 3 * PAGE));
  E2E_SYS(write(ring, "hello", 5) == 5 ? 0 : -1);
  ring_map = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ring, 0);
  E2E_SYS(ring_map == MAP_FAILED ? -1 : 0);
  strcpy(ring_map + 100, "through the mapping");
  E2E_SYS(fcntl(ring, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW));
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", ring);
  E2E_SYS(ring_ro = open(path, O_RDONLY));
  char two[2];
  E2E_SYS(read(ring_ro, two, 2) == 2 ? 0 : -1);
}

static void make_plain(void) {
  E2E_SYS(plain = memfd("plain data", 0));
  E2E_SYS(ftruncate(plain, 64 * PAGE));
  char page[PAGE];
  for (int p = 0; p < 64; p += 9) {
    memset(page, 'a' + p % 26, sizeof page);
    E2E_SYS(pwrite(plain, page, sizeof page, (off_t)p * PAGE) == PAGE ? 0 : -1);
  }
}

static void make_sealed(void) {
  E2E_SYS(sealed = memfd("sealed", MFD_ALLOW_SEALING));
  E2E_SYS(write(sealed, "fixed contents", 14) == 14 ? 0 : -1);
  E2E_SYS(fcntl(sealed, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL));
  sealed_map = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, sealed, 0);
  E2E_SYS(sealed_map == MAP_FAILED ? -1 : 0);
}

// Shares the ring (descriptor and mapping); after the go writes through its descriptor.
static pid_t sharing_child(int* release) {
  pid_t pid = e2e_fork_held(release);
  if (pid == 0) _exit(pwrite(ring, "child", 5, PAGE) == 5 && ring_map[100] == 't' ? 0 : 1);
  return pid;
}

static void check_ring(int release, pid_t child) {
  e2e_check_link(ring, "/memfd:ring (deleted)");
  E2E_CHECK(fcntl(ring, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "ring seals %#x",
            fcntl(ring, F_GET_SEALS));
  E2E_CHECK(lseek(ring, 0, SEEK_CUR) == 5, "ring offset %ld", (long)lseek(ring, 0, SEEK_CUR));
  E2E_CHECK(lseek(ring_ro, 0, SEEK_CUR) == 2, "second open file's offset %ld",
            (long)lseek(ring_ro, 0, SEEK_CUR));
  E2E_CHECK((fcntl(ring_ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "second open file not read-only");
  E2E_CHECK(strcmp(ring_map + 100, "through the mapping") == 0, "ring mapping holds '%s'",
            ring_map + 100);
  E2E_CHECK(memcmp(ring_map, "hello", 5) == 0, "the write through the fd is not in the mapping");
  E2E_SYS(pwrite(ring, "after", 5, 2 * PAGE) == 5 ? 0 : -1);
  E2E_CHECK(memcmp(ring_map + 2 * PAGE, "after", 5) == 0,
            "a write through the fd after the restore is not in the mapping");
  char buf[8] = "";
  E2E_CHECK(pread(ring_ro, buf, 5, 100) == 5 && memcmp(buf, "throu", 5) == 0,
            "the second open file reads '%s'", buf);
  errno = 0;
  E2E_CHECK(ftruncate(ring, 4 * PAGE) < 0 && errno == EPERM, "growing the ring: %s",
            strerror(errno));
  E2E_SYS(write(release, "g", 1));
  int st = -1;
  E2E_CHECK(waitpid(child, &st, 0) == child && st == 0, "sharing child ended 0x%x", st);
  E2E_CHECK(memcmp(ring_map + PAGE, "child", 5) == 0,
            "the child's write through its fd is not in the parent's mapping");
}

static void check_plain(void) {
  e2e_check_link(plain, "/memfd:plain data (deleted)");
  E2E_CHECK(fcntl(plain, F_GET_SEALS) == F_SEAL_SEAL, "plain seals %#x", fcntl(plain, F_GET_SEALS));
  struct stat st;
  E2E_SYS(fstat(plain, &st));
  E2E_CHECK(st.st_size == 64 * PAGE, "plain size %ld", (long)st.st_size);
  int bad = 0;
  char page[PAGE];
  for (int p = 0; p < 64; ++p) {
    if (pread(plain, page, sizeof page, (off_t)p * PAGE) != PAGE) ++bad;
    char want = p % 9 == 0 ? (char)('a' + p % 26) : 0;
    if (page[0] != want || page[PAGE - 1] != want) ++bad;
  }
  E2E_CHECK(bad == 0, "plain: %d pages differ", bad);
}

static void check_sealed(void) {
  E2E_CHECK(fcntl(sealed, F_GET_SEALS) == (F_SEAL_WRITE | F_SEAL_SEAL), "sealed seals %#x",
            fcntl(sealed, F_GET_SEALS));
  E2E_CHECK(memcmp(sealed_map, "fixed contents", 14) == 0, "sealed mapping holds '%.14s'",
            sealed_map);
  errno = 0;
  E2E_CHECK(pwrite(sealed, "x", 1, 0) < 0 && errno == EPERM, "write to the sealed memfd: %s",
            strerror(errno));
  E2E_CHECK(mprotect(sealed_map, PAGE, PROT_READ | PROT_WRITE) < 0,
            "its read-only mapping became writable");
}

int main(void) {
  e2e_setup();
  make_ring();
  make_plain();
  make_sealed();
  int release;
  pid_t child = sharing_child(&release);
  e2e_ready();
  e2e_wait_go();
  check_ring(release, child);
  check_plain();
  check_sealed();
  return e2e_finish();
}
