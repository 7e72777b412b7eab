// Datagram unix sockets: a server bound to a path (O_NONBLOCK) with datagrams queued from a
// client bound to an abstract name and from an unnamed client connected to it (sizes 0 to 3000
// bytes); an unbound unconnected socket; two named sockets connected to each other with a
// datagram queued each way; a thread blocked in recv() on a socket bound to an abstract name.
// After the restore every datagram comes back once, in order, with its boundaries and its
// sender's name; the connected sockets still send without an address and see their peers' names;
// the blocked recv() takes a new datagram without EINTR.
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "e2e_prog.h"

#define BIG 3000

static socklen_t make_addr(struct sockaddr_un* a, const char* name, size_t len) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path, name, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int bound(const char* name, size_t len) {
  struct sockaddr_un a;
  socklen_t alen = make_addr(&a, name, len);
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  E2E_SYS(fd);
  if (len > 0) E2E_SYS(bind(fd, (struct sockaddr*)&a, alen));
  return fd;
}

static void connect_to(int fd, const char* name, size_t len) {
  struct sockaddr_un a;
  socklen_t alen = make_addr(&a, name, len);
  E2E_SYS(connect(fd, (struct sockaddr*)&a, alen));
}

static void send_to(int fd, const void* buf, size_t n, const char* name, size_t len) {
  struct sockaddr_un a;
  socklen_t alen = make_addr(&a, name, len);
  E2E_CHECK(sendto(fd, buf, n, 0, (struct sockaddr*)&a, alen) == (ssize_t)n, "sendto: %s",
            strerror(errno));
}

// The next datagram must be `want` (n bytes) from `from` (flen bytes; 0: an unnamed sender; the
// kernel counts a path's terminating NUL).
static void expect_dgram(int fd, const char* want, size_t n, const char* from, size_t flen,
                         const char* what) {
  static char buf[8192];
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  socklen_t alen = sizeof a;
  ssize_t got =
      recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr*)&a, &alen);
  E2E_CHECK(got == (ssize_t)n && memcmp(buf, want, n) == 0, "%s: got %zd bytes (%s), want %zu",
            what, got, got < 0 ? strerror(errno) : "ok", n);
  size_t name_len = alen > offsetof(struct sockaddr_un, sun_path)
                        ? alen - offsetof(struct sockaddr_un, sun_path)
                        : 0;
  E2E_CHECK(name_len == flen && memcmp(a.sun_path, from, flen) == 0,
            "%s: the sender's name has %zu bytes ('%.*s'), want %zu", what, name_len, (int)name_len,
            a.sun_path, flen);
}

static void expect_empty(int fd, const char* what) {
  char c;
  ssize_t got = recv(fd, &c, 1, MSG_DONTWAIT);
  E2E_CHECK(got < 0 && errno == EAGAIN, "%s: %zd more bytes", what, got);
}

static int blocked_fd;
static char thread_got[16];
static ssize_t thread_n;
static int thread_errno;
static volatile int thread_in_recv;

static void* blocked_reader(void* arg) {
  (void)arg;
  thread_in_recv = 1;
  thread_n = recv(blocked_fd, thread_got, sizeof thread_got - 1, 0);  // blocked here at dump
  thread_errno = errno;
  return NULL;
}

int main(void) {
  e2e_setup();
  static char big[BIG];
  for (size_t i = 0; i < BIG; ++i) big[i] = (char)('a' + (i * 7) % 26);
  const char* srv = e2e_path("dg.sock");
  const char* apath = e2e_path("a.sock");
  char c1n[64], bn[64], tn[64];
  size_t c1l = (size_t)snprintf(c1n, sizeof c1n, "%cckpt-e2e-dg-c1-%d", 0, (int)getpid());
  size_t bl = (size_t)snprintf(bn, sizeof bn, "%cckpt-e2e-dg-b-%d", 0, (int)getpid());
  size_t tl = (size_t)snprintf(tn, sizeof tn, "%cckpt-e2e-dg-t-%d", 0, (int)getpid());

  int s = bound(srv, strlen(srv));
  E2E_SYS(fcntl(s, F_SETFL, O_NONBLOCK));
  int c1 = bound(c1n, c1l);
  int c2 = bound("", 0);
  connect_to(c2, srv, strlen(srv));
  int u = bound("", 0);
  send_to(c1, "one", 3, srv, strlen(srv));
  E2E_CHECK(send(c2, "two", 3, 0) == 3, "send two: %s", strerror(errno));
  send_to(c1, "", 0, srv, strlen(srv));
  E2E_CHECK(send(c2, big, BIG, 0) == BIG, "send big: %s", strerror(errno));
  send_to(u, "from-u", 6, srv, strlen(srv));

  int a = bound(apath, strlen(apath));
  int b = bound(bn, bl);
  connect_to(a, bn, bl);
  connect_to(b, apath, strlen(apath));
  E2E_CHECK(send(a, "to-b", 4, 0) == 4, "send to-b: %s", strerror(errno));
  E2E_CHECK(send(b, "to-a", 4, 0) == 4, "send to-a: %s", strerror(errno));

  blocked_fd = bound(tn, tl);
  pthread_t t;
  e2e_thread(&t, blocked_reader, NULL);
  while (!thread_in_recv) usleep(1000);
  usleep(50 * 1000);  // let the thread reach recv()
  e2e_ready();
  e2e_wait_go();

  struct stat st;
  E2E_CHECK(stat(srv, &st) == 0 && S_ISSOCK(st.st_mode), "%s is not a socket file", srv);
  E2E_CHECK((fcntl(s, F_GETFL) & O_NONBLOCK) != 0, "the server lost O_NONBLOCK");
  expect_dgram(s, "one", 3, c1n, c1l, "datagram one");
  expect_dgram(s, "two", 3, "", 0, "datagram two");
  expect_dgram(s, "", 0, c1n, c1l, "the empty datagram");
  expect_dgram(s, big, BIG, "", 0, "the big datagram");
  expect_dgram(s, "from-u", 6, "", 0, "the unconnected socket's datagram");
  expect_empty(s, "the server");
  expect_dgram(b, "to-b", 4, apath, strlen(apath) + 1, "the datagram to b");
  expect_dgram(a, "to-a", 4, bn, bl, "the datagram to a");
  expect_empty(a, "a"), expect_empty(b, "b");

  E2E_CHECK(send(c2, "after", 5, 0) == 5, "the connected client cannot send: %s", strerror(errno));
  expect_dgram(s, "after", 5, "", 0, "the datagram sent after the restore");
  send_to(u, "u2", 2, srv, strlen(srv));
  expect_dgram(s, "u2", 2, "", 0, "the unconnected socket's new datagram");
  send_to(c1, "c1", 2, srv, strlen(srv));
  expect_dgram(s, "c1", 2, c1n, c1l, "the bound client's new datagram");
  E2E_CHECK(send(a, "again", 5, 0) == 5, "a cannot send to its peer: %s", strerror(errno));
  expect_dgram(b, "again", 5, apath, strlen(apath) + 1, "a's new datagram");
  E2E_CHECK(send(b, "back", 4, 0) == 4, "b cannot send to its peer: %s", strerror(errno));
  expect_dgram(a, "back", 4, bn, bl, "b's new datagram");

  send_to(u, "wake", 4, tn, tl);
  pthread_join(t, NULL);
  E2E_CHECK(thread_n == 4 && memcmp(thread_got, "wake", 4) == 0,
            "the blocked recv returned %zd (%s)", thread_n,
            thread_n < 0 ? strerror(thread_errno) : "ok");
  return e2e_finish();
}
