// A FIFO deleted while open (issue 11, point 7): three open files of it (read-write, read-only
// non-blocking, write-only), data waiting in it, then the name unlinked; a second FIFO of the
// same name made and deleted too, with other data. After the restore the fds must still read as
// "<path> (deleted)", each group must be one FIFO (one inode) holding its own data, with each
// open file's flags, and data written through one end must come out of the other.
#include <fcntl.h>
#include <sys/stat.h>

#include "e2e_prog.h"

struct fifo {
  int rw, rd, wr;
};

static struct fifo make(const char* path, const char* data) {
  E2E_SYS(mkfifo(path, 0640));
  struct fifo f;
  E2E_SYS(f.rw = open(path, O_RDWR));
  E2E_SYS(f.rd = open(path, O_RDONLY | O_NONBLOCK));
  E2E_SYS(f.wr = open(path, O_WRONLY));
  E2E_CHECK(write(f.wr, data, strlen(data)) == (ssize_t)strlen(data), "fill: %s", strerror(errno));
  E2E_SYS(unlink(path));
  return f;
}

static void check(const struct fifo* f, const char* path, const char* data, const char* name) {
  char want[4200], link[4200], proc[64];
  snprintf(want, sizeof want, "%s (deleted)", path);
  int fds[3] = {f->rw, f->rd, f->wr};
  int modes[3] = {O_RDWR, O_RDONLY | O_NONBLOCK, O_WRONLY};
  struct stat first;
  E2E_SYS(fstat(f->rw, &first));
  E2E_CHECK(S_ISFIFO(first.st_mode) && (first.st_mode & 0777) == 0640,
            "%s: mode 0%o, want a FIFO with 0640", name, (unsigned)first.st_mode);
  for (int i = 0; i < 3; ++i) {
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fds[i]);
    ssize_t n = readlink(proc, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    E2E_CHECK(strcmp(link, want) == 0, "%s fd %d: links to '%.200s', want '%.200s'", name, fds[i],
              link, want);
    struct stat st;
    E2E_SYS(fstat(fds[i], &st));
    E2E_CHECK(st.st_ino == first.st_ino, "%s fd %d: another FIFO than fd %d", name, fds[i], f->rw);
    int fl = fcntl(fds[i], F_GETFL);
    E2E_CHECK((fl & (O_ACCMODE | O_NONBLOCK)) == modes[i], "%s fd %d: flags 0%o, want 0%o", name,
              fds[i], fl, modes[i]);
  }
  char buf[64] = {0};
  ssize_t n = read(f->rd, buf, sizeof buf - 1);
  E2E_CHECK(n == (ssize_t)strlen(data) && memcmp(buf, data, (size_t)n) == 0,
            "%s: read %zd bytes '%s', want '%s'", name, n, n > 0 ? buf : "", data);
  E2E_CHECK(write(f->wr, "more", 4) == 4, "%s: write: %s", name, strerror(errno));
  memset(buf, 0, sizeof buf);
  n = read(f->rw, buf, sizeof buf - 1);
  E2E_CHECK(n == 4 && memcmp(buf, "more", 4) == 0, "%s: read back %zd bytes", name, n);
}

int main(void) {
  e2e_setup();
  const char* path = e2e_path("gone.fifo");
  struct fifo a = make(path, "first fifo");
  struct fifo b = make(path, "second");
  e2e_ready();
  e2e_wait_go();
  check(&a, path, "first fifo", "FIFO a");
  check(&b, path, "second", "FIFO b");
  struct stat sa, sb;
  E2E_SYS(fstat(a.rw, &sa));
  E2E_SYS(fstat(b.rw, &sb));
  E2E_CHECK(sa.st_ino != sb.st_ino, "the two deleted FIFOs came back as one");
  E2E_CHECK(access(path, F_OK) < 0, "%s exists after the restore", path);
  return e2e_finish();
}
