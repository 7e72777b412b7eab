// Listening TCP sockets survive dump and restore: a thread blocked in accept() on each goes on
// without EINTR and takes the connection made after restore; address, port, backlog, options and
// close-on-exec are those of before. IPv4 on 127.0.0.1 always, IPv6 on ::1 where it works.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "e2e_prog.h"

struct listener {
  const char* name;
  int family;
  int fd;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  volatile int entered;  // the thread is about to block in accept()
  volatile int done;
  int accepted;
  int accept_errno;
  char got[8];
};

static void* accept_thread(void* arg) {
  struct listener* l = arg;
  l->entered = 1;
  int c = accept(l->fd, NULL, NULL);
  l->accept_errno = c < 0 ? errno : 0;
  l->accepted = c;
  if (c >= 0) {
    ssize_t n = read(c, l->got, sizeof l->got - 1);
    if (n > 0) l->got[n] = 0;
    ssize_t ignored = write(c, "pong", 4);
    (void)ignored;
  }
  l->done = 1;
  return NULL;
}

static int int_opt(int fd, int level, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
}

// Returns 0 when the family does not work here (no ::1).
static int open_listener(struct listener* l, int cloexec) {
  l->fd = socket(l->family, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
  if (l->fd < 0) return 0;
  int one = 1;
  E2E_SYS(setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  memset(&l->addr, 0, sizeof l->addr);
  if (l->family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*)&l->addr;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l->addr_len = sizeof *a;
  } else {
    E2E_SYS(setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
    struct sockaddr_in6* a = (struct sockaddr_in6*)&l->addr;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    l->addr_len = sizeof *a;
  }
  if (bind(l->fd, (struct sockaddr*)&l->addr, l->addr_len) < 0) {
    close(l->fd);
    return 0;
  }
  E2E_SYS(listen(l->fd, 16));
  l->addr_len = sizeof l->addr;
  E2E_SYS(getsockname(l->fd, (struct sockaddr*)&l->addr, &l->addr_len));
  return 1;
}

static void check_listener(struct listener* l, int cloexec) {
  struct sockaddr_storage now;
  socklen_t len = sizeof now;
  E2E_SYS(getsockname(l->fd, (struct sockaddr*)&now, &len));
  E2E_CHECK(len == l->addr_len && memcmp(&now, &l->addr, len) == 0, "%s: address changed", l->name);
  E2E_CHECK(int_opt(l->fd, SOL_SOCKET, SO_ACCEPTCONN) == 1, "%s: not listening", l->name);
  E2E_CHECK(int_opt(l->fd, SOL_SOCKET, SO_REUSEADDR) == 1, "%s: SO_REUSEADDR lost", l->name);
  if (l->family == AF_INET6)
    E2E_CHECK(int_opt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "%s: IPV6_V6ONLY lost", l->name);
  struct tcp_info info;
  socklen_t ilen = sizeof info;
  E2E_SYS(getsockopt(l->fd, IPPROTO_TCP, TCP_INFO, &info, &ilen));
  E2E_CHECK(info.tcpi_sacked == 16, "%s: backlog %u, was 16", l->name, info.tcpi_sacked);
  int fdflags = fcntl(l->fd, F_GETFD);
  E2E_CHECK(!!(fdflags & FD_CLOEXEC) == cloexec, "%s: close-on-exec %d, was %d", l->name,
            !!(fdflags & FD_CLOEXEC), cloexec);
  E2E_CHECK(!(fcntl(l->fd, F_GETFL) & O_NONBLOCK), "%s: became non-blocking", l->name);

  int c = socket(l->family, SOCK_STREAM, 0);
  E2E_SYS(c);
  E2E_SYS(connect(c, (struct sockaddr*)&l->addr, l->addr_len));
  E2E_SYS(write(c, "ping", 4));
  char buf[8] = {0};
  ssize_t n = read(c, buf, sizeof buf - 1);
  E2E_CHECK(n == 4 && strcmp(buf, "pong") == 0, "%s: client got %zd bytes '%s'", l->name, n, buf);
  for (int i = 0; i < 500 && !l->done; ++i) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  E2E_CHECK(l->done, "%s: accept() never returned", l->name);
  E2E_CHECK(l->accepted >= 0, "%s: accept() failed: %s", l->name, strerror(l->accept_errno));
  E2E_CHECK(strcmp(l->got, "ping") == 0, "%s: server got '%s'", l->name, l->got);
  close(c);
}

int main(void) {
  e2e_setup();
  struct listener v4 = {.name = "127.0.0.1", .family = AF_INET};
  struct listener v6 = {.name = "::1", .family = AF_INET6};
  if (!open_listener(&v4, 1)) {
    e2e_say("FAIL cannot listen on 127.0.0.1: %s", strerror(errno));
    return 1;
  }
  int have_v6 = open_listener(&v6, 0);
  if (!have_v6) e2e_say("NOTE ::1 does not work here; IPv6 not checked");
  pthread_t t4, t6;
  e2e_thread(&t4, accept_thread, &v4);
  if (have_v6) e2e_thread(&t6, accept_thread, &v6);
  while (!v4.entered || (have_v6 && !v6.entered)) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  struct timespec settle = {0, 50 * 1000 * 1000};  // into accept() itself
  nanosleep(&settle, NULL);
  e2e_ready();
  e2e_wait_go();
  check_listener(&v4, 1);
  if (have_v6) check_listener(&v6, 0);
  if (v4.done) pthread_join(t4, NULL);
  if (have_v6 && v6.done) pthread_join(t6, NULL);
  return e2e_finish();
}
