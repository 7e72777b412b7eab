// Files deleted while open: after restore every fd is again an unlinked regular file
// (st_nlink 0, /proc/self/fd/N reads "<path> (deleted)") with the same contents, size, mode,
// flags and offset; a dup'd fd still shares its offset, and two opens of one deleted file are
// still one inode (a write through one is read through the other).
#include <fcntl.h>
#include <sys/stat.h>

#include "e2e_prog.h"

static void check_link(int fd, const char* path) {
  char proc[64], link[200] = {0}, want[200];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  snprintf(want, sizeof want, "%s (deleted)", path);
  E2E_CHECK(readlink(proc, link, sizeof link - 1) > 0 && strcmp(link, want) == 0,
            "fd %d links to '%s', want '%s'", fd, link, want);
}

static void check_file(int fd, off_t size, mode_t mode) {
  struct stat st;
  E2E_SYS(fstat(fd, &st));
  E2E_CHECK(S_ISREG(st.st_mode), "fd %d is not a regular file", fd);
  E2E_CHECK(st.st_nlink == 0, "fd %d has %lu links", fd, (unsigned long)st.st_nlink);
  E2E_CHECK(st.st_size == size, "fd %d size %lld, want %lld", fd, (long long)st.st_size,
            (long long)size);
  E2E_CHECK((st.st_mode & 07777) == mode, "fd %d mode %o, want %o", fd, st.st_mode & 07777, mode);
}

static int flags_of(int fd) {
  return fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK);
}

int main(void) {
  e2e_setup();
  static char data[100000];
  for (size_t i = 0; i < sizeof data; ++i) data[i] = (char)('a' + (i * 7) % 26);
  const char* big = e2e_path("big data (x).bin");
  const char* log = e2e_path("app.log");
  const char* empty = e2e_path("empty");
  int rw = open(big, O_RDWR | O_CREAT | O_TRUNC, 0640);
  E2E_SYS(rw);
  E2E_SYS(write(rw, data, sizeof data));
  E2E_SYS(lseek(rw, 1234, SEEK_SET));
  int dup_fd = 40;
  E2E_SYS(dup2(rw, dup_fd));
  int ro = open(big, O_RDONLY | O_CLOEXEC);  // a second open file of the same inode
  E2E_SYS(ro);
  E2E_SYS(lseek(ro, 50000, SEEK_SET));
  int app = open(log, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
  E2E_SYS(app);
  E2E_SYS(write(app, "line one\n", 9));
  int none = open(empty, O_RDWR | O_CREAT | O_TRUNC | O_NONBLOCK, 0604);
  E2E_SYS(none);
  E2E_SYS(unlink(big));
  E2E_SYS(unlink(log));
  E2E_SYS(unlink(empty));
  int fds[] = {rw, dup_fd, ro, app, none};
  int flags[5];
  for (int i = 0; i < 5; ++i) flags[i] = flags_of(fds[i]);
  e2e_ready();
  e2e_wait_go();

  for (int i = 0; i < 5; ++i)
    E2E_CHECK(flags_of(fds[i]) == flags[i], "fd %d flags %o, want %o", fds[i], flags_of(fds[i]),
              flags[i]);
  check_link(rw, big);
  check_link(dup_fd, big);
  check_link(ro, big);
  check_link(app, log);
  check_link(none, empty);
  check_file(rw, sizeof data, 0640);
  check_file(app, 9, 0600);
  check_file(none, 0, 0604);
  struct stat a, b, c;
  E2E_SYS(fstat(rw, &a));
  E2E_SYS(fstat(dup_fd, &b));
  E2E_SYS(fstat(ro, &c));
  E2E_CHECK(a.st_ino == b.st_ino && a.st_ino == c.st_ino && a.st_dev == c.st_dev,
            "the fds of one deleted file are different inodes now");
  E2E_CHECK(lseek(rw, 0, SEEK_CUR) == 1234, "rw offset %lld", (long long)lseek(rw, 0, SEEK_CUR));
  E2E_CHECK(lseek(ro, 0, SEEK_CUR) == 50000, "ro offset %lld", (long long)lseek(ro, 0, SEEK_CUR));
  static char back[sizeof data];
  E2E_CHECK(pread(ro, back, sizeof back, 0) == (ssize_t)sizeof back &&
                memcmp(back, data, sizeof data) == 0,
            "contents differ after restore");
  // dup'd fds share one offset; separate opens do not, but see each other's writes.
  E2E_SYS(lseek(rw, 777, SEEK_SET));
  E2E_CHECK(lseek(dup_fd, 0, SEEK_CUR) == 777, "dup'd fd no longer shares the offset");
  E2E_CHECK(lseek(ro, 0, SEEK_CUR) == 50000, "separate open moved with the other");
  E2E_SYS(pwrite(rw, "ZZZ", 3, 10));
  char z[3] = {0};
  E2E_CHECK(pread(ro, z, 3, 10) == 3 && memcmp(z, "ZZZ", 3) == 0,
            "write through one open not seen through the other");
  E2E_SYS(write(app, "line two\n", 9));
  char logtext[32] = {0};
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", app);
  int rd = open(proc, O_RDONLY);
  E2E_SYS(rd);
  E2E_CHECK(pread(rd, logtext, sizeof logtext - 1, 0) == 18 &&
                strcmp(logtext, "line one\nline two\n") == 0,
            "append log holds '%s'", logtext);
  close(rd);
  return e2e_finish();
}
