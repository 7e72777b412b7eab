// UDP and netlink sockets survive dump and restore. UDP: a socket bound on 127.0.0.1 (and on ::1
// where it works) with options set, a second one connected to it; a thread blocked in recvfrom()
// on the bound one goes on without EINTR and receives, after restore, what the connected one
// sends, from the same source port as before. Netlink: a NETLINK_ROUTE socket bound to a port
// id with groups joined keeps them and answers a request made after restore. Shut down UDP
// sockets stay so: one connected and shut down for writing (send fails with EPIPE), one bound and
// shut down for reading (poll shows POLLRDHUP), one unbound and shut down both ways (POLLHUP).
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "e2e_prog.h"

struct udp_pair {
  int family;
  int server, client;
  struct sockaddr_storage server_addr, client_addr;
  socklen_t len;
  volatile int got;
  int recv_errno;
  char buf[32];
  struct sockaddr_storage from;
};

static void* receiver(void* arg) {
  struct udp_pair* u = arg;
  socklen_t len = sizeof u->from;
  ssize_t n = recvfrom(u->server, u->buf, sizeof u->buf - 1, 0, (struct sockaddr*)&u->from, &len);
  u->recv_errno = n < 0 ? errno : 0;
  if (n >= 0) u->buf[n] = 0;
  u->got = 1;
  return NULL;
}

static int open_pair(struct udp_pair* u) {
  u->server = socket(u->family, SOCK_DGRAM, 0);
  if (u->server < 0) return 0;
  memset(&u->server_addr, 0, sizeof u->server_addr);
  if (u->family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*)&u->server_addr;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    u->len = sizeof *a;
  } else {
    struct sockaddr_in6* a = (struct sockaddr_in6*)&u->server_addr;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    u->len = sizeof *a;
  }
  if (bind(u->server, (struct sockaddr*)&u->server_addr, u->len) < 0) return 0;
  E2E_SYS(getsockname(u->server, (struct sockaddr*)&u->server_addr, &u->len));
  int rcvbuf = 50000, one = 1;
  E2E_SYS(setsockopt(u->server, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
  E2E_SYS(setsockopt(u->server, SOL_SOCKET, SO_BROADCAST, &one, sizeof one));
  u->client = socket(u->family, SOCK_DGRAM, 0);
  E2E_SYS(u->client);
  E2E_SYS(connect(u->client, (struct sockaddr*)&u->server_addr, u->len));
  socklen_t len = sizeof u->client_addr;
  E2E_SYS(getsockname(u->client, (struct sockaddr*)&u->client_addr, &len));
  return 1;
}

static void check_pair(struct udp_pair* u, const char* name) {
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  E2E_SYS(getsockname(u->server, (struct sockaddr*)&a, &len));
  E2E_CHECK(memcmp(&a, &u->server_addr, u->len) == 0, "%s: bound address changed", name);
  len = sizeof a;
  E2E_SYS(getpeername(u->client, (struct sockaddr*)&a, &len));
  E2E_CHECK(memcmp(&a, &u->server_addr, u->len) == 0, "%s: connected peer changed", name);
  int v = 0;
  len = sizeof v;
  E2E_SYS(getsockopt(u->server, SOL_SOCKET, SO_RCVBUF, &v, &len));
  E2E_CHECK(v == 100000, "%s: SO_RCVBUF is %d", name, v);
  E2E_SYS(getsockopt(u->server, SOL_SOCKET, SO_BROADCAST, &v, &len));
  E2E_CHECK(v == 1, "%s: SO_BROADCAST is %d", name, v);
  E2E_SYS(send(u->client, name, strlen(name), 0));
  for (int i = 0; i < 2000 && !u->got; ++i) usleep(1000);
  E2E_CHECK(u->got && u->recv_errno == 0, "%s: recvfrom: %s", name,
            u->got ? strerror(u->recv_errno) : "nothing arrived");
  E2E_CHECK(strcmp(u->buf, name) == 0, "%s: received '%s'", name, u->buf);
  E2E_CHECK(memcmp(&u->from, &u->client_addr, u->len) == 0, "%s: sent from another address", name);
}

static int netlink_open(uint32_t* port) {
  int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  E2E_SYS(fd);
  struct sockaddr_nl a;
  memset(&a, 0, sizeof a);
  a.nl_family = AF_NETLINK;
  a.nl_groups = RTMGRP_LINK;
  E2E_SYS(bind(fd, (struct sockaddr*)&a, sizeof a));
  int group = RTNLGRP_IPV4_IFADDR;
  E2E_SYS(setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group));
  socklen_t len = sizeof a;
  E2E_SYS(getsockname(fd, (struct sockaddr*)&a, &len));
  *port = a.nl_pid;
  return fd;
}

static void check_netlink(int fd, uint32_t port) {
  struct sockaddr_nl a;
  socklen_t len = sizeof a;
  E2E_SYS(getsockname(fd, (struct sockaddr*)&a, &len));
  E2E_CHECK(a.nl_pid == port, "netlink port id %u, was %u", a.nl_pid, port);
  uint32_t groups = 0;
  len = sizeof groups;
  E2E_SYS(getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, &groups, &len));
  uint32_t want = (1u << (RTNLGRP_LINK - 1)) | (1u << (RTNLGRP_IPV4_IFADDR - 1));
  E2E_CHECK(groups == want, "netlink groups %#x, want %#x", groups, want);
  struct {
    struct nlmsghdr h;
    struct rtgenmsg g;
  } req;
  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 42;
  req.g.rtgen_family = AF_UNSPEC;
  E2E_SYS(send(fd, &req, sizeof req, 0));
  char buf[16384];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  E2E_CHECK(n > 0, "no netlink answer: %s", strerror(errno));
  if (n > 0) {
    struct nlmsghdr* h = (struct nlmsghdr*)buf;
    E2E_CHECK(h->nlmsg_seq == 42 && h->nlmsg_pid == port, "netlink answer seq %u to port %u",
              h->nlmsg_seq, h->nlmsg_pid);
  }
}

struct shut_down {
  int wr, rd, both;
};

static struct shut_down open_shut_down(const struct udp_pair* u) {
  struct shut_down s;
  E2E_SYS(s.wr = socket(AF_INET, SOCK_DGRAM, 0));
  E2E_SYS(connect(s.wr, (const struct sockaddr*)&u->server_addr, u->len));
  E2E_SYS(shutdown(s.wr, SHUT_WR));
  struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  E2E_SYS(s.rd = socket(AF_INET, SOCK_DGRAM, 0));
  E2E_SYS(bind(s.rd, (struct sockaddr*)&any, sizeof any));
  // Not connected: ENOTCONN, but the kernel keeps the shutdown all the same.
  E2E_CHECK(shutdown(s.rd, SHUT_RD) < 0 && errno == ENOTCONN, "bound shutdown: %s",
            strerror(errno));
  E2E_SYS(s.both = socket(AF_INET, SOCK_DGRAM, 0));
  E2E_CHECK(shutdown(s.both, SHUT_RDWR) < 0 && errno == ENOTCONN, "unbound shutdown: %s",
            strerror(errno));
  return s;
}

static short polled(int fd) {
  struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
  return poll(&p, 1, 0) < 0 ? -1 : p.revents;
}

static void check_shut_down(const struct shut_down* s) {
  errno = 0;
  E2E_CHECK(send(s->wr, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
            "send on the socket shut down for writing: %s", strerror(errno));
  short rd = polled(s->rd), both = polled(s->both);
  E2E_CHECK(rd > 0 && (rd & POLLRDHUP) && !(rd & POLLHUP), "shut down for reading: poll %#x", rd);
  E2E_CHECK(both > 0 && (both & POLLHUP), "shut down both ways: poll %#x", both);
}

int main(void) {
  e2e_setup();
  struct udp_pair v4 = {.family = AF_INET}, v6 = {.family = AF_INET6};
  if (!open_pair(&v4)) {
    e2e_say("FAIL no UDP on 127.0.0.1");
    return 1;
  }
  int have_v6 = open_pair(&v6);
  pthread_t t4, t6;
  e2e_thread(&t4, receiver, &v4);
  if (have_v6) e2e_thread(&t6, receiver, &v6);
  uint32_t port = 0;
  int nl = netlink_open(&port);
  struct shut_down shut = open_shut_down(&v4);
  e2e_ready();
  e2e_wait_go();
  check_shut_down(&shut);
  check_pair(&v4, "v4");
  if (have_v6) check_pair(&v6, "v6");
  check_netlink(nl, port);
  return e2e_finish();
}
