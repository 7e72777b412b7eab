// Open files of the kinds a program commonly holds: regular files with offsets, O_APPEND and
// close-on-exec flags, a directory, character devices, a pipe with unread data and a FIFO with
// unread data. After restore each fd must be the same file, at the same offset, with the same
// flags, and hold the same data.
#include <fcntl.h>
#include <sys/stat.h>

#include "e2e_prog.h"

struct fd_id {
  int fd;
  dev_t dev;
  ino_t ino;
};

static struct fd_id ids[32];
static int nids;

static void remember(int fd) {
  struct stat st;
  fstat(fd, &st);
  ids[nids++] = (struct fd_id){fd, st.st_dev, st.st_ino};
}

static void check_ids(void) {
  for (int i = 0; i < nids; ++i) {
    struct stat st;
    int ok = fstat(ids[i].fd, &st) == 0;
    E2E_CHECK(ok, "fd %d is closed after restore", ids[i].fd);
    if (!ok) continue;
    char link[64] = {0}, proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", ids[i].fd);
    // A restored pipe is a new pipe (new inode); its data and ends are checked below.
    int is_pipe = readlink(proc, link, sizeof link - 1) > 0 && strncmp(link, "pipe:", 5) == 0;
    E2E_CHECK(is_pipe || (st.st_dev == ids[i].dev && st.st_ino == ids[i].ino),
              "fd %d is another file after restore", ids[i].fd);
  }
}

static int flags_of(int fd) {
  return fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK);
}

int main(void) {
  e2e_setup();
  char data[10000];
  for (size_t i = 0; i < sizeof data; ++i) data[i] = (char)('a' + i % 26);
  int rw = open(e2e_path("rw.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  E2E_SYS(rw);
  E2E_SYS(write(rw, data, sizeof data));
  E2E_SYS(lseek(rw, 1234, SEEK_SET));
  int app = open(e2e_path("append.log"), O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
  E2E_SYS(app);
  E2E_SYS(write(app, "first\n", 6));
  int ro = open(e2e_path("rw.txt"), O_RDONLY | O_CLOEXEC);
  E2E_SYS(ro);
  E2E_SYS(lseek(ro, 5000, SEEK_SET));
  int high = 100;
  E2E_SYS(dup2(rw, high));
  int dir = open(getenv("E2E_DIR"), O_RDONLY | O_DIRECTORY);
  E2E_SYS(dir);
  int null_fd = open("/dev/null", O_WRONLY), zero = open("/dev/zero", O_RDONLY);
  int urandom = open("/dev/urandom", O_RDONLY | O_NONBLOCK);
  E2E_SYS(null_fd | zero | urandom);
  int p[2];
  E2E_SYS(pipe2(p, O_NONBLOCK));
  E2E_SYS(write(p[1], "unread pipe data", 16));
  E2E_SYS(mkfifo(e2e_path("fifo"), 0600));
  int fifo = open(e2e_path("fifo"), O_RDWR | O_NONBLOCK);
  E2E_SYS(fifo);
  E2E_SYS(write(fifo, "unread fifo data", 16));
  int fds[] = {rw, app, ro, high, dir, null_fd, zero, urandom, p[0], p[1], fifo};
  int flags[11];
  for (int i = 0; i < 11; ++i) {
    remember(fds[i]);
    flags[i] = flags_of(fds[i]);
  }
  e2e_ready();
  e2e_wait_go();

  check_ids();
  for (int i = 0; i < 11; ++i)
    E2E_CHECK(flags_of(fds[i]) == flags[i], "fd %d flags %#o, were %#o", fds[i], flags_of(fds[i]),
              flags[i]);
  E2E_CHECK(lseek(rw, 0, SEEK_CUR) == 1234, "rw.txt offset %ld, want 1234",
            (long)lseek(rw, 0, SEEK_CUR));
  E2E_CHECK(lseek(ro, 0, SEEK_CUR) == 5000, "ro offset %ld, want 5000",
            (long)lseek(ro, 0, SEEK_CUR));
  char buf[64];
  E2E_CHECK(read(rw, buf, 10) == 10 && memcmp(buf, data + 1234, 10) == 0, "rw.txt read wrong data");
  E2E_CHECK(lseek(high, 0, SEEK_CUR) == 1244, "fd 100 does not share rw.txt's offset");
  E2E_CHECK(fcntl(ro, F_GETFD) & FD_CLOEXEC, "close-on-exec lost on ro");
  E2E_CHECK(!(fcntl(rw, F_GETFD) & FD_CLOEXEC), "close-on-exec appeared on rw");
  E2E_CHECK(!(fcntl(dir, F_GETFD) & FD_CLOEXEC), "close-on-exec appeared on the directory");
  E2E_SYS(lseek(app, 0, SEEK_SET));
  E2E_CHECK(write(app, "second\n", 7) == 7, "write to append.log failed");
  struct stat st;
  fstat(app, &st);
  E2E_CHECK(st.st_size == 13, "append.log is %ld bytes, O_APPEND lost?", (long)st.st_size);
  int in_dir = openat(dir, "rw.txt", O_RDONLY);
  E2E_CHECK(in_dir >= 0, "openat through the directory fd failed: %s", strerror(errno));
  E2E_CHECK(write(null_fd, "x", 1) == 1, "/dev/null write failed");
  memset(buf, 1, sizeof buf);
  E2E_CHECK(read(zero, buf, 16) == 16 && buf[0] == 0 && buf[15] == 0, "/dev/zero read failed");
  E2E_CHECK(read(urandom, buf, 16) == 16, "/dev/urandom read failed");
  ssize_t n = read(p[0], buf, sizeof buf);
  E2E_CHECK(n == 16 && memcmp(buf, "unread pipe data", 16) == 0, "pipe gave %zd bytes", n);
  E2E_CHECK(write(p[1], "more", 4) == 4 && read(p[0], buf, 4) == 4, "pipe ends are not connected");
  n = read(fifo, buf, sizeof buf);
  E2E_CHECK(n == 16 && memcmp(buf, "unread fifo data", 16) == 0, "FIFO gave %zd bytes (%s)", n,
            n < 0 ? strerror(errno) : "");
  return e2e_finish();
}
