// A parent, a two-threaded child and a grandchild sharing what fork shares: pipes between parent
// and child in both directions with unread data in them at dump time, and a regular file opened
// by the parent before fork (one file description, one offset). After the restore the three
// write to the file in turn: the content is the exact sequence only if the offset is still
// shared. Each process checks its pid and parent; the grandchild reports through its exit
// status, the child through the pipe to the parent, the parent prints the verdict.
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define HELLO_DOWN "hello-down"
#define HELLO_UP "hello-up"
#define AFTER "after"

struct report {
  int failures;
  int grandchild_status;
  pid_t pid, ppid;
};

static int file_fd;
static volatile long worker_ticks;
static volatile int worker_tid;

static long offset(void) {
  return (long)lseek(file_fd, 0, SEEK_CUR);
}

static void write_token(const char* token, long want_offset, const char* who) {
  E2E_CHECK(offset() == want_offset, "%s: shared offset %ld before writing %s, want %ld", who,
            offset(), token, want_offset);
  E2E_CHECK(write(file_fd, token, 2) == 2, "%s: write %s: %s", who, token, strerror(errno));
}

static char read_byte(int fd) {
  char c = 0;
  ssize_t n;
  do n = read(fd, &c, 1);
  while (n < 0 && errno == EINTR);
  return n == 1 ? c : 0;
}

// Everything in the pipe right now (none of it may still be on its way: it was written before
// the dump, or before the byte that woke the reader).
static void expect_buffered(int fd, const char* want, const char* what) {
  char buf[64] = "";
  E2E_SYS(fcntl(fd, F_SETFL, O_NONBLOCK));
  ssize_t n = read(fd, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  E2E_CHECK(n == (ssize_t)strlen(want) && strcmp(buf, want) == 0,
            "%s held '%s' (%zd bytes, %s), want '%s'", what, buf, n, n < 0 ? strerror(errno) : "ok",
            want);
  E2E_SYS(fcntl(fd, F_SETFL, 0));
}

static void grandchild(int ctl, int ready, pid_t parent) {
  pid_t me = getpid();
  write_token("G0", 4, "grandchild");
  E2E_CHECK(write(ready, "r", 1) == 1, "grandchild ready: %s", strerror(errno));
  char c = read_byte(ctl);  // blocked here at dump time
  E2E_CHECK(c == 'g', "grandchild read '%c' from its control pipe", c);
  E2E_CHECK(getpid() == me, "grandchild is pid %d, was %d", (int)getpid(), (int)me);
  E2E_CHECK(getppid() == parent, "grandchild's parent is %d, want %d", (int)getppid(), (int)parent);
  write_token("G1", 10, "grandchild");
  _exit(e2e_failures ? 1 : 0);
}

static void* worker(void* arg) {
  (void)arg;
  worker_tid = (int)syscall(SYS_gettid);
  for (;;) {
    ++worker_ticks;
    usleep(2000);
  }
  return NULL;
}

static void check_worker(void) {
  long before = worker_ticks;
  usleep(100 * 1000);
  E2E_CHECK(worker_ticks > before, "the child's worker thread stopped at %ld ticks", before);
  E2E_CHECK(syscall(SYS_tgkill, getpid(), worker_tid, 0) == 0, "the worker thread %d: %s",
            worker_tid, strerror(errno));
}

// The child: forks the grandchild, starts a worker thread, leaves HELLO_UP unread in `up`, then
// waits on `ctl`; HELLO_DOWN must be waiting in `down` when it wakes.
static void child(int down, int up, int ctl, int ready, pid_t parent) {
  pid_t me = getpid();
  write_token("C0", 2, "child");
  int gctl[2], gready[2];
  E2E_SYS(pipe(gctl));
  E2E_SYS(pipe(gready));
  pid_t g = fork();
  E2E_SYS(g);
  if (g == 0) {
    close(down), close(up), close(ctl), close(ready), close(gctl[1]), close(gready[0]);
    grandchild(gctl[0], gready[1], me);
  }
  close(gctl[0]), close(gready[1]);
  E2E_CHECK(read_byte(gready[0]) == 'r', "the grandchild did not get ready");
  pthread_t t;
  E2E_CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create failed");
  E2E_CHECK(write(up, HELLO_UP, strlen(HELLO_UP)) == (ssize_t)strlen(HELLO_UP), "write up");
  E2E_CHECK(write(ready, "r", 1) == 1, "child ready: %s", strerror(errno));

  char c = read_byte(ctl);  // blocked here at dump time
  E2E_CHECK(c == 'g', "child read '%c' from its control pipe", c);
  expect_buffered(down, HELLO_DOWN AFTER, "the pipe from the parent");
  check_worker();
  write_token("C1", 8, "child");
  E2E_CHECK(write(gctl[1], "g", 1) == 1, "wake the grandchild: %s", strerror(errno));
  struct report rep = {0, -1, getpid(), getppid()};
  E2E_CHECK(waitpid(g, &rep.grandchild_status, 0) == g, "waitpid(grandchild): %s", strerror(errno));
  E2E_CHECK(getpid() == me, "child is pid %d, was %d", (int)getpid(), (int)me);
  E2E_CHECK(getppid() == parent, "child's parent is %d, want %d", (int)getppid(), (int)parent);
  rep.failures = e2e_failures;
  E2E_CHECK(write(up, &rep, sizeof rep) == (ssize_t)sizeof rep, "report: %s", strerror(errno));
  _exit(e2e_failures ? 1 : 0);
}

int main(void) {
  e2e_setup();
  pid_t me = getpid();
  file_fd = open(e2e_path("shared.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  E2E_SYS(file_fd);
  int down[2], up[2], ctl[2], ready[2];
  E2E_SYS(pipe(down));
  E2E_SYS(pipe(up));
  E2E_SYS(pipe(ctl));
  E2E_SYS(pipe(ready));
  write_token("P0", 0, "parent");
  pid_t c = fork();
  E2E_SYS(c);
  if (c == 0) {
    close(down[1]), close(up[0]), close(ctl[1]), close(ready[0]);
    child(down[0], up[1], ctl[0], ready[1], me);
  }
  close(down[0]), close(up[1]), close(ctl[0]), close(ready[1]);
  E2E_SYS(write(down[1], HELLO_DOWN, strlen(HELLO_DOWN)));
  if (read_byte(ready[0]) != 'r') {
    e2e_say("FAIL the child did not get ready");
    return 1;
  }
  e2e_ready();
  e2e_wait_go();

  expect_buffered(up[0], HELLO_UP, "the pipe from the child");
  write_token("P1", 6, "parent");
  E2E_CHECK(write(down[1], AFTER, strlen(AFTER)) == (ssize_t)strlen(AFTER), "write down");
  E2E_CHECK(write(ctl[1], "g", 1) == 1, "wake the child: %s", strerror(errno));
  struct report rep;
  memset(&rep, 0, sizeof rep);
  ssize_t n = read(up[0], &rep, sizeof rep);
  E2E_CHECK(n == (ssize_t)sizeof rep, "the child's report: %zd bytes", n);
  E2E_CHECK(rep.pid == c, "the child says it is pid %d, want %d", (int)rep.pid, (int)c);
  E2E_CHECK(rep.ppid == me, "the child's parent is %d, want %d", (int)rep.ppid, (int)me);
  E2E_CHECK(rep.failures == 0, "the child found %d problems (FAIL lines above)", rep.failures);
  E2E_CHECK(WIFEXITED(rep.grandchild_status) && WEXITSTATUS(rep.grandchild_status) == 0,
            "the grandchild ended with status 0x%x", rep.grandchild_status);
  int st = 0;
  E2E_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "the child ended with status 0x%x", st);

  char content[64] = "";
  n = pread(file_fd, content, sizeof content - 1, 0);
  content[n > 0 ? n : 0] = 0;
  E2E_CHECK(strcmp(content, "P0C0G0P1C1G1") == 0, "the shared file holds '%s'", content);
  E2E_CHECK(offset() == 12, "the shared offset ends at %ld, want 12", offset());
  E2E_CHECK(getpid() == me, "parent is pid %d, was %d", (int)getpid(), (int)me);
  return e2e_finish();
}
