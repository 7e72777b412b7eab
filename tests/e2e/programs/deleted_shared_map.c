// Deleted files and memfds mapped shared by a parent and its forked child (issue 11, point 7):
// a deleted file that the parent also holds open, a deleted file only mapped, and a memfd only
// mapped. After the restore both processes map the same objects again: a write by one through
// its mapping is read by the other, a write through the parent's fd is seen in both mappings,
// the contents are as at the dump and the files are still unlinked.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define SIZE (3 * 4096)

struct objects {
  char* opened;  // also open as `fd` in the parent
  char* mapped;
  char* memfd;
};

static char* map_new_file(const char* path, char fill, int* keep_fd) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  E2E_SYS(fd);
  char buf[SIZE];
  memset(buf, fill, sizeof buf);
  E2E_CHECK(write(fd, buf, sizeof buf) == SIZE, "write %s: %s", path, strerror(errno));
  char* p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  E2E_CHECK(p != MAP_FAILED, "mmap %s: %s", path, strerror(errno));
  if (p == MAP_FAILED) exit(1);
  E2E_SYS(unlink(path));
  if (keep_fd)
    *keep_fd = fd;
  else
    close(fd);
  return p;
}

static char* map_memfd(char fill) {
  int fd = memfd_create("e2e-shared", MFD_CLOEXEC);
  E2E_SYS(fd);
  E2E_SYS(ftruncate(fd, SIZE));
  char* p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  E2E_CHECK(p != MAP_FAILED, "mmap memfd: %s", strerror(errno));
  if (p == MAP_FAILED) exit(1);
  close(fd);  // memfds open as fds are not saved yet: this one is only mapped
  memset(p, fill, SIZE);
  return p;
}

static void check_contents(const struct objects* o, const char* who) {
  E2E_CHECK(o->opened[5000] == 'A' && o->opened[SIZE - 1] == 'A', "%s: opened file lost its data",
            who);
  E2E_CHECK(memcmp(o->opened, "parent-before", 13) == 0, "%s: opened file lost the parent's write",
            who);
  E2E_CHECK(o->mapped[100] == 'B' && memcmp(o->mapped + 4096, "child-before", 12) == 0,
            "%s: mapped file lost its data", who);
  E2E_CHECK(o->memfd[9000] == 'C' && memcmp(o->memfd, "memfd-before", 12) == 0,
            "%s: memfd lost its data", who);
}

static void write_all(const struct objects* o, const char* tag) {
  memcpy(o->opened + 64, tag, strlen(tag));
  memcpy(o->mapped + 64, tag, strlen(tag));
  memcpy(o->memfd + 64, tag, strlen(tag));
}

static void check_seen(const struct objects* o, const char* tag, const char* who) {
  E2E_CHECK(memcmp(o->opened + 64, tag, strlen(tag)) == 0,
            "%s: did not see '%s' in the opened file", who, tag);
  E2E_CHECK(memcmp(o->mapped + 64, tag, strlen(tag)) == 0,
            "%s: did not see '%s' in the mapped file", who, tag);
  E2E_CHECK(memcmp(o->memfd + 64, tag, strlen(tag)) == 0, "%s: did not see '%s' in the memfd", who,
            tag);
}

// The child: after the restore it waits for the parent's word, checks what the parent wrote,
// writes its own and answers.
static int run_child(const struct objects* o, int from_parent, int to_parent) {
  char c;
  if (read(from_parent, &c, 1) != 1) return 1;
  check_contents(o, "child");
  check_seen(o, "written by the parent", "child");
  E2E_CHECK(memcmp(o->opened + 128, "through the fd", 14) == 0,
            "child: a write to the parent's fd is not in its mapping");
  write_all(o, "written by the child!");
  if (write(to_parent, "c", 1) != 1) return 1;
  return e2e_failures == 0 ? 0 : 1;
}

int main(void) {
  e2e_setup();
  int fd;
  struct objects o;
  o.opened = map_new_file(e2e_path("opened.bin"), 'A', &fd);
  o.mapped = map_new_file(e2e_path("mapped.bin"), 'B', NULL);
  o.memfd = map_memfd('C');
  memcpy(o.opened, "parent-before", 13);
  memcpy(o.memfd, "memfd-before", 12);
  int down[2], up[2];
  E2E_SYS(pipe(down));
  E2E_SYS(pipe(up));
  pid_t child = fork();
  E2E_SYS(child);
  if (child == 0) {
    close(down[1]);
    close(up[0]);
    memcpy(o.mapped + 4096, "child-before", 12);
    if (write(up[1], "r", 1) != 1) _exit(1);
    _exit(run_child(&o, down[0], up[1]));
  }
  close(down[0]);
  close(up[1]);
  char c;
  E2E_CHECK(read(up[0], &c, 1) == 1, "child did not start");
  e2e_ready();
  e2e_wait_go();

  check_contents(&o, "parent");
  struct stat st;
  E2E_SYS(fstat(fd, &st));
  E2E_CHECK(st.st_nlink == 0 && st.st_size == SIZE, "opened file: %lu links, %lld bytes",
            (unsigned long)st.st_nlink, (long long)st.st_size);
  write_all(&o, "written by the parent");
  E2E_CHECK(pwrite(fd, "through the fd", 14, 128) == 14, "pwrite: %s", strerror(errno));
  E2E_CHECK(memcmp(o.opened + 128, "through the fd", 14) == 0,
            "parent: a write to its fd is not in its own mapping");
  E2E_CHECK(write(down[1], "p", 1) == 1, "tell child: %s", strerror(errno));
  E2E_CHECK(read(up[0], &c, 1) == 1, "child did not answer");
  check_seen(&o, "written by the child!", "parent");
  char back[21] = {0};
  E2E_CHECK(pread(fd, back, 21, 64) == 21 && memcmp(back, "written by the child!", 21) == 0,
            "parent: the child's write is not in the file read through the fd");
  int status = 0;
  E2E_SYS(waitpid(child, &status, 0));
  E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %#x)", status);
  return e2e_finish();
}
