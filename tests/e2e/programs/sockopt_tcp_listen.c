// The options of listening TCP sockets that ckpt claims to keep (docs/engine.md, tcp_listen):
// SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, TCP_NODELAY, TCP_DEFER_ACCEPT, IPV6_V6ONLY and the
// backlog, each read back after the restore and compared with what it was (a listener with
// every option set, one with none, an IPv6 one with some), and shown in behaviour: a connection
// accepted after the restore has the KEEPALIVE/NODELAY it had before, and a second socket can
// join the port of the SO_REUSEPORT listener but not that of the plain one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "e2e_prog.h"

enum { kReuseAddr, kReusePort, kKeepAlive, kNoDelay, kDeferAccept, kV6Only, kBacklog, kOpts };
static const char* const kNames[kOpts] = {"SO_REUSEADDR", "SO_REUSEPORT",     "SO_KEEPALIVE",
                                          "TCP_NODELAY",  "TCP_DEFER_ACCEPT", "IPV6_V6ONLY",
                                          "backlog"};

struct listener {
  const char* name;
  int family;
  int set[kOpts];  // what to set (-1: leave the default)
  int fd;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int before[kOpts];                         // read back before the dump
  int accepted_keepalive, accepted_nodelay;  // of a connection accepted before the dump
};

static int int_opt(int fd, int level, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
}

static void read_options(const struct listener* l, int out[kOpts]) {
  out[kReuseAddr] = int_opt(l->fd, SOL_SOCKET, SO_REUSEADDR);
  out[kReusePort] = int_opt(l->fd, SOL_SOCKET, SO_REUSEPORT);
  out[kKeepAlive] = int_opt(l->fd, SOL_SOCKET, SO_KEEPALIVE);
  out[kNoDelay] = int_opt(l->fd, IPPROTO_TCP, TCP_NODELAY);
  out[kDeferAccept] = int_opt(l->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT);
  out[kV6Only] = l->family == AF_INET6 ? int_opt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY) : 0;
  struct tcp_info info;
  socklen_t ilen = sizeof info;
  out[kBacklog] = getsockopt(l->fd, IPPROTO_TCP, TCP_INFO, &info, &ilen) == 0
                      ? (int)info.tcpi_sacked  // a listener's backlog
                      : -1;
}

static void set_opt(int fd, int level, int opt, int v) {
  if (v >= 0) E2E_SYS(setsockopt(fd, level, opt, &v, sizeof v));
}

// Returns 0 when the family does not work here (no ::1).
static int open_listener(struct listener* l) {
  l->fd = socket(l->family, SOCK_STREAM, 0);
  if (l->fd < 0) return 0;
  set_opt(l->fd, SOL_SOCKET, SO_REUSEADDR, l->set[kReuseAddr]);
  set_opt(l->fd, SOL_SOCKET, SO_REUSEPORT, l->set[kReusePort]);
  set_opt(l->fd, SOL_SOCKET, SO_KEEPALIVE, l->set[kKeepAlive]);
  set_opt(l->fd, IPPROTO_TCP, TCP_NODELAY, l->set[kNoDelay]);
  set_opt(l->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, l->set[kDeferAccept]);
  memset(&l->addr, 0, sizeof l->addr);
  if (l->family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*)&l->addr;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l->addr_len = sizeof *a;
  } else {
    set_opt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, l->set[kV6Only]);
    struct sockaddr_in6* a = (struct sockaddr_in6*)&l->addr;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    l->addr_len = sizeof *a;
  }
  if (bind(l->fd, (struct sockaddr*)&l->addr, l->addr_len) < 0) {
    close(l->fd);
    return 0;
  }
  E2E_SYS(listen(l->fd, l->set[kBacklog]));
  l->addr_len = sizeof l->addr;
  E2E_SYS(getsockname(l->fd, (struct sockaddr*)&l->addr, &l->addr_len));
  return 1;
}

// Connects, sends a byte (a TCP_DEFER_ACCEPT listener hands over a connection only once data
// came) and accepts; notes the accepted socket's KEEPALIVE and NODELAY.
static void accept_one(const struct listener* l, int* keepalive, int* nodelay) {
  int c = socket(l->family, SOCK_STREAM, 0);
  E2E_SYS(c);
  E2E_SYS(connect(c, (const struct sockaddr*)&l->addr, l->addr_len));
  E2E_SYS(write(c, "x", 1));
  int a = accept(l->fd, NULL, NULL);
  E2E_CHECK(a >= 0, "%s: accept: %s", l->name, strerror(errno));
  *keepalive = a >= 0 ? int_opt(a, SOL_SOCKET, SO_KEEPALIVE) : -1;
  *nodelay = a >= 0 ? int_opt(a, IPPROTO_TCP, TCP_NODELAY) : -1;
  if (a >= 0) close(a);
  close(c);
}

// 0 when a new socket with SO_REUSEPORT can bind the listener's address, else the errno.
static int join_port(const struct listener* l) {
  int s = socket(l->family, SOCK_STREAM, 0);
  if (s < 0) return errno;
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (l->family == AF_INET6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int err = bind(s, (const struct sockaddr*)&l->addr, l->addr_len) == 0 ? 0 : errno;
  close(s);
  return err;
}

static void check_after(struct listener* l) {
  int now[kOpts];
  read_options(l, now);
  for (int i = 0; i < kOpts; ++i)
    E2E_CHECK(now[i] == l->before[i], "%s: %s is %d after the restore, was %d", l->name, kNames[i],
              now[i], l->before[i]);
  int keepalive = -1, nodelay = -1;
  accept_one(l, &keepalive, &nodelay);
  E2E_CHECK(keepalive == l->accepted_keepalive && nodelay == l->accepted_nodelay,
            "%s: an accepted connection has SO_KEEPALIVE %d TCP_NODELAY %d, before the dump %d %d",
            l->name, keepalive, nodelay, l->accepted_keepalive, l->accepted_nodelay);
}

int main(void) {
  e2e_setup();
  struct listener all = {
      .name = "127.0.0.1 every option", .family = AF_INET, .set = {1, 1, 1, 1, 5, -1, 8}};
  struct listener none = {
      .name = "127.0.0.1 no option", .family = AF_INET, .set = {-1, -1, -1, -1, -1, -1, 4}};
  struct listener v6 = {.name = "::1", .family = AF_INET6, .set = {-1, 1, -1, 1, -1, 1, 6}};
  if (!open_listener(&all) || !open_listener(&none)) {
    e2e_say("FAIL cannot listen on 127.0.0.1: %s", strerror(errno));
    return 1;
  }
  int have_v6 = open_listener(&v6);
  if (!have_v6) e2e_say("NOTE ::1 does not work here; IPv6 not checked");
  struct listener* ls[3] = {&all, &none, &v6};
  for (int i = 0; i < 2 + have_v6; ++i) {
    struct listener* l = ls[i];
    read_options(l, l->before);
    accept_one(l, &l->accepted_keepalive, &l->accepted_nodelay);
    for (int k = 0; k < kOpts; ++k)  // the setting took: a test of a default proves nothing
      if (l->set[k] >= 0)
        E2E_CHECK(l->set[k] == 0 ? l->before[k] == 0 : l->before[k] > 0,
                  "%s: %s reads %d after setting %d", l->name, kNames[k], l->before[k], l->set[k]);
  }
  E2E_CHECK(join_port(&all) == 0, "before the dump a second socket cannot join %s's port: %s",
            all.name, strerror(join_port(&all)));
  E2E_CHECK(join_port(&none) == EADDRINUSE, "before the dump %s's port is not taken", none.name);
  e2e_ready();
  e2e_wait_go();

  for (int i = 0; i < 2 + have_v6; ++i) check_after(ls[i]);
  int err = join_port(&all);
  E2E_CHECK(err == 0, "a second socket cannot join %s's port after the restore: %s", all.name,
            strerror(err));
  err = join_port(&none);
  E2E_CHECK(err == EADDRINUSE, "%s's port is not taken after the restore (bind: %s)", none.name,
            strerror(err));
  return e2e_finish();
}
