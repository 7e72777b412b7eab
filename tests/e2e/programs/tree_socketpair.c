// A parent and a child talking through unix socket pairs made by socketpair(): a stream pair and
// a datagram pair with unread data queued in both directions at dump time (datagrams of several
// sizes, one empty), a seqpacket pair inside the child (records queued both ways, one end shut
// down for writing), an idle datagram pair the child waits on, and a parent thread blocked in
// recv on a stream pair. After the restore every queue holds exactly what it held, message
// boundaries kept; the blocked recv returns the next message without EINTR; new messages go both
// ways; O_NONBLOCK, close-on-exec and SO_PASSCRED are as they were.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define DOWN_STREAM "down-stream-1"
#define UP_STREAM "up-stream"
#define AFTER_DOWN "after-down"
#define BIG_DOWN 3000
#define BIG_UP 5000

struct report {
  int failures;
  pid_t pid, ppid;
};

static int wake_fd;  // the parent's end the thread is blocked on
static char thread_got[16];
static ssize_t thread_n;
static int thread_errno;

static void fill_pattern(char* buf, size_t n, int seed) {
  for (size_t i = 0; i < n; ++i) buf[i] = (char)('a' + (i * 7 + (size_t)seed) % 26);
}

// Sends one datagram or record; a full message or the test fails.
static void send_msg(int fd, const void* buf, size_t n, const char* what) {
  ssize_t sent = send(fd, buf, n, 0);
  E2E_CHECK(sent == (ssize_t)n, "send %s: %zd (%s)", what, sent, strerror(errno));
}

// The next datagram or record must be exactly `want` (n bytes).
static void expect_msg(int fd, const char* want, size_t n, const char* what) {
  static char buf[8192];
  ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
  E2E_CHECK(got == (ssize_t)n && memcmp(buf, want, n) == 0,
            "%s: got %zd bytes (%s), want %zu bytes '%.20s'", what, got,
            got < 0 ? strerror(errno) : "ok", n, want);
}

static void expect_empty(int fd, const char* what) {
  char c;
  ssize_t got = recv(fd, &c, 1, MSG_DONTWAIT);
  E2E_CHECK(got < 0 && errno == EAGAIN, "%s: %zd more bytes (%s), want none", what, got,
            got < 0 ? strerror(errno) : "ok");
}

// All the stream holds now must be `want`.
static void expect_stream(int fd, const char* want, const char* what) {
  char buf[256] = "";
  ssize_t got = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
  buf[got > 0 ? got : 0] = 0;
  E2E_CHECK(got == (ssize_t)strlen(want) && strcmp(buf, want) == 0, "%s held '%s' (%zd), want '%s'",
            what, buf, got, want);
  expect_empty(fd, what);
}

static void* blocked_reader(void* arg) {
  (void)arg;
  thread_n = recv(wake_fd, thread_got, sizeof thread_got - 1, 0);  // blocked here at dump time
  thread_errno = errno;
  return NULL;
}

static void child(int st, int dg, int ctl, int wk, pid_t parent) {
  pid_t me = getpid();
  static char big_up[BIG_UP], big_down[BIG_DOWN];
  fill_pattern(big_up, BIG_UP, 1);
  fill_pattern(big_down, BIG_DOWN, 2);
  int sp[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp));
  send_msg(sp[0], "rec-one", 7, "record one");
  send_msg(sp[0], "rec-two-longer", 14, "record two");
  send_msg(sp[1], "back", 4, "record back");
  E2E_SYS(shutdown(sp[0], SHUT_WR));
  E2E_CHECK(send(st, UP_STREAM, strlen(UP_STREAM), 0) == (ssize_t)strlen(UP_STREAM), "send up");
  send_msg(dg, "u1", 2, "datagram u1");
  send_msg(dg, big_up, BIG_UP, "big datagram up");
  send_msg(ctl, "r", 1, "ready");

  char go[8];
  ssize_t n = recv(ctl, go, sizeof go, 0);  // blocked here at dump time
  E2E_CHECK(n == 2 && memcmp(go, "go", 2) == 0, "child's control message: %zd bytes", n);
  expect_stream(st, DOWN_STREAM AFTER_DOWN, "the stream from the parent");
  expect_msg(dg, "d1", 2, "datagram d1");
  expect_msg(dg, big_down, BIG_DOWN, "the big datagram from the parent");
  expect_msg(dg, "", 0, "the empty datagram");
  expect_msg(dg, "after-d", 7, "the datagram sent after the restore");
  expect_empty(dg, "the datagrams from the parent");
  expect_msg(sp[1], "rec-one", 7, "seqpacket record one");
  expect_msg(sp[1], "rec-two-longer", 14, "seqpacket record two");
  char c;
  E2E_CHECK(recv(sp[1], &c, 1, MSG_DONTWAIT) == 0, "the shut-down seqpacket end does not read EOF");
  expect_msg(sp[0], "back", 4, "seqpacket record back");
  expect_empty(sp[0], "the other seqpacket end");
  E2E_CHECK(send(sp[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
            "the end shut down for writing can send again");
  send_msg(sp[1], "new", 3, "a new record");
  expect_msg(sp[0], "new", 3, "the new record");
  E2E_CHECK(send(wk, "wake!", 5, 0) == 5, "wake the parent's thread: %s", strerror(errno));
  send_msg(dg, "child-after", 11, "datagram after the restore");
  E2E_CHECK(getppid() == parent, "child's parent is %d, want %d", (int)getppid(), (int)parent);
  struct report rep = {e2e_failures, getpid(), getppid()};
  E2E_CHECK(getpid() == me, "child is pid %d, was %d", (int)getpid(), (int)me);
  rep.failures = e2e_failures;
  E2E_CHECK(send(st, &rep, sizeof rep, 0) == (ssize_t)sizeof rep, "report: %s", strerror(errno));
  _exit(e2e_failures ? 1 : 0);
}

static int passcred(int fd) {
  int on = -1;
  socklen_t len = sizeof on;
  return getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, &len) == 0 ? on : -1;
}

static void check_flags(int st, int dg, int ctl) {
  E2E_CHECK(passcred(ctl) == 1, "the control end lost SO_PASSCRED (%d)", passcred(ctl));
  E2E_CHECK(passcred(dg) == 0, "the datagram end has SO_PASSCRED (%d)", passcred(dg));
  E2E_CHECK((fcntl(dg, F_GETFL) & O_NONBLOCK) != 0, "the datagram end lost O_NONBLOCK");
  E2E_CHECK((fcntl(st, F_GETFL) & O_NONBLOCK) == 0, "the stream end became O_NONBLOCK");
  E2E_CHECK(fcntl(st, F_GETFD) == FD_CLOEXEC, "the stream end lost close-on-exec");
  E2E_CHECK(fcntl(dg, F_GETFD) == 0, "the datagram end became close-on-exec");
}

int main(void) {
  e2e_setup();
  pid_t me = getpid();
  int st[2], dg[2], ctl[2], wk[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st));
  E2E_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg));
  E2E_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, ctl));
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, wk));
  pid_t c = fork();
  E2E_SYS(c);
  if (c == 0) {
    close(st[0]), close(dg[0]), close(ctl[0]), close(wk[0]);
    child(st[1], dg[1], ctl[1], wk[1], me);
  }
  close(st[1]), close(dg[1]), close(ctl[1]), close(wk[1]);
  static char big_up[BIG_UP], big_down[BIG_DOWN];
  fill_pattern(big_up, BIG_UP, 1);
  fill_pattern(big_down, BIG_DOWN, 2);
  E2E_SYS(fcntl(dg[0], F_SETFL, O_NONBLOCK));
  E2E_SYS(send(st[0], DOWN_STREAM, strlen(DOWN_STREAM), 0));
  send_msg(dg[0], "d1", 2, "datagram d1");
  send_msg(dg[0], big_down, BIG_DOWN, "big datagram down");
  send_msg(dg[0], "", 0, "empty datagram");
  int on = 1;  // kept: nothing is queued at ctl[0] at the dump
  E2E_SYS(setsockopt(ctl[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on));
  wake_fd = wk[0];
  pthread_t t;
  e2e_thread(&t, blocked_reader, NULL);
  char r;
  if (recv(ctl[0], &r, 1, 0) != 1) {
    e2e_say("FAIL the child did not get ready");
    return 1;
  }
  usleep(50 * 1000);  // let the thread reach its recv
  e2e_ready();
  e2e_wait_go();

  check_flags(st[0], dg[0], ctl[0]);
  expect_stream(st[0], UP_STREAM, "the stream from the child");
  expect_msg(dg[0], "u1", 2, "datagram u1");
  expect_msg(dg[0], big_up, BIG_UP, "the big datagram from the child");
  expect_empty(dg[0], "the datagrams from the child");
  E2E_CHECK(send(st[0], AFTER_DOWN, strlen(AFTER_DOWN), 0) == (ssize_t)strlen(AFTER_DOWN),
            "send after the restore: %s", strerror(errno));
  send_msg(dg[0], "after-d", 7, "datagram after the restore");
  send_msg(ctl[0], "go", 2, "go");

  pthread_join(t, NULL);
  E2E_CHECK(thread_n == 5 && memcmp(thread_got, "wake!", 5) == 0,
            "the blocked recv returned %zd (%s), want 'wake!'", thread_n,
            thread_n < 0 ? strerror(thread_errno) : "ok");
  struct report rep;
  memset(&rep, 0, sizeof rep);
  ssize_t n = recv(st[0], &rep, sizeof rep, MSG_WAITALL);
  E2E_CHECK(n == (ssize_t)sizeof rep, "the child's report: %zd bytes", n);
  E2E_CHECK(rep.pid == c && rep.ppid == me, "the child says it is %d under %d", (int)rep.pid,
            (int)rep.ppid);
  E2E_CHECK(rep.failures == 0, "the child found %d problems (FAIL lines above)", rep.failures);
  int st_status = 0;
  E2E_CHECK(waitpid(c, &st_status, 0) == c && WIFEXITED(st_status) && WEXITSTATUS(st_status) == 0,
            "the child ended with status 0x%x", st_status);
  expect_msg(dg[0], "child-after", 11, "the child's datagram after the restore");
  E2E_CHECK(getpid() == me, "parent is pid %d, was %d", (int)getpid(), (int)me);
  return e2e_finish();
}
