// UDP sockets that joined multicast groups on the loopback interface (issue 12): one any-source
// join, one source-specific (INCLUDE 127.0.0.1), one any-source with a blocked source (EXCLUDE
// 127.0.0.2), one IPv6 join; and a sender whose IP_MULTICAST_IF is 127.0.0.1. After the restore
// each socket has the same groups with the same filters (MCAST_MSFILTER), the sender the same
// interface, IP_MULTICAST_ALL stays off where it was turned off, and datagrams sent to the groups
// arrive again.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "e2e_prog.h"

static int udp(int family, unsigned short* port) {
  int fd = socket(family, SOCK_DGRAM, 0);
  E2E_SYS(fd);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_family = (sa_family_t)family;
  socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  E2E_SYS(bind(fd, (struct sockaddr*)&ss, len));
  E2E_SYS(getsockname(fd, (struct sockaddr*)&ss, &len));
  if (port)
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in*)&ss)->sin_port
                                    : ((struct sockaddr_in6*)&ss)->sin6_port);
  return fd;
}

static struct in_addr v4(const char* text) {
  struct in_addr a;
  inet_pton(AF_INET, text, &a);
  return a;
}

// The socket's filter of `group` on lo: mode and up to 4 sources (as text, comma-separated).
static int filter_of(int fd, int family, const char* group, char* out, size_t n) {
  char buf[GROUP_FILTER_SIZE(4)];
  memset(buf, 0, sizeof buf);
  struct group_filter* gf = (struct group_filter*)buf;
  gf->gf_interface = if_nametoindex("lo");
  gf->gf_group.ss_family = (sa_family_t)family;
  if (family == AF_INET)
    inet_pton(AF_INET, group, &((struct sockaddr_in*)&gf->gf_group)->sin_addr);
  else
    inet_pton(AF_INET6, group, &((struct sockaddr_in6*)&gf->gf_group)->sin6_addr);
  gf->gf_numsrc = 4;
  socklen_t len = sizeof buf;
  if (getsockopt(fd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6, MCAST_MSFILTER, gf, &len) < 0)
    return snprintf(out, n, "not joined (%s)", strerror(errno));
  int w = snprintf(out, n, "%s", gf->gf_fmode == MCAST_INCLUDE ? "include" : "exclude");
  struct sockaddr_storage* src = gf->gf_slist;
  for (unsigned i = 0; i < gf->gf_numsrc && i < 4; ++i) {
    char a[INET6_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &((struct sockaddr_in*)&src[i])->sin_addr, a, sizeof a);
    w += snprintf(out + w, n - (size_t)w, " %s", a);
  }
  return w;
}

static void expect_filter(int fd, int family, const char* group, const char* want) {
  char got[256];
  filter_of(fd, family, group, got, sizeof got);
  E2E_CHECK(strcmp(got, want) == 0, "group %s: filter '%s', want '%s'", group, got, want);
}

static void send_to(int fd, const char* group, unsigned short port, const char* text) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = v4(group)};
  E2E_CHECK(
      sendto(fd, text, strlen(text), 0, (struct sockaddr*)&to, sizeof to) == (ssize_t)strlen(text),
      "send to %s: %s", group, strerror(errno));
}

static void expect_datagram(int fd, const char* want, const char* what) {
  char buf[64] = {0};
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
  E2E_CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, strlen(want)) == 0,
            "%s: received %zd bytes '%s' (%s), want '%s'", what, n, n > 0 ? buf : "",
            n < 0 ? strerror(errno) : "ok", want);
}

int main(void) {
  e2e_setup();
  int lo = (int)if_nametoindex("lo");
  unsigned short p1, p2;
  int any = udp(AF_INET, &p1), ssm = udp(AF_INET, &p2), blocked = udp(AF_INET, NULL);
  int six = udp(AF_INET6, NULL), sender = udp(AF_INET, NULL);
  struct ip_mreqn join = {.imr_multiaddr = v4("239.255.77.1"), .imr_ifindex = lo};
  E2E_SYS(setsockopt(any, IPPROTO_IP, IP_ADD_MEMBERSHIP, &join, sizeof join));
  struct ip_mreq_source one = {.imr_multiaddr = v4("239.255.77.2"),
                               .imr_interface = v4("127.0.0.1"),
                               .imr_sourceaddr = v4("127.0.0.1")};
  E2E_SYS(setsockopt(ssm, IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, &one, sizeof one));
  struct ip_mreqn join3 = {.imr_multiaddr = v4("239.255.77.3"), .imr_ifindex = lo};
  E2E_SYS(setsockopt(blocked, IPPROTO_IP, IP_ADD_MEMBERSHIP, &join3, sizeof join3));
  struct ip_mreq_source block = {.imr_multiaddr = v4("239.255.77.3"),
                                 .imr_interface = v4("127.0.0.1"),
                                 .imr_sourceaddr = v4("127.0.0.2")};
  E2E_SYS(setsockopt(blocked, IPPROTO_IP, IP_BLOCK_SOURCE, &block, sizeof block));
  struct ipv6_mreq join6 = {.ipv6mr_interface = (unsigned)lo};
  inet_pton(AF_INET6, "ff15::7", &join6.ipv6mr_multiaddr);
  E2E_SYS(setsockopt(six, IPPROTO_IPV6, IPV6_JOIN_GROUP, &join6, sizeof join6));
  int off = 0;  // deliver only the groups this socket joined (default 1: any group joined here)
  E2E_SYS(setsockopt(any, IPPROTO_IP, IP_MULTICAST_ALL, &off, sizeof off));
  struct in_addr out_if = v4("127.0.0.1");
  E2E_SYS(setsockopt(sender, IPPROTO_IP, IP_MULTICAST_IF, &out_if, sizeof out_if));
  send_to(sender, "239.255.77.1", p1, "before");
  expect_datagram(any, "before", "the any-source group before the dump");
  e2e_ready();
  e2e_wait_go();

  expect_filter(any, AF_INET, "239.255.77.1", "exclude");
  expect_filter(ssm, AF_INET, "239.255.77.2", "include 127.0.0.1");
  expect_filter(blocked, AF_INET, "239.255.77.3", "exclude 127.0.0.2");
  expect_filter(six, AF_INET6, "ff15::7", "exclude");
  expect_filter(any, AF_INET, "239.255.77.2", "not joined (Cannot assign requested address)");
  int all = 1;
  socklen_t all_len = sizeof all;
  E2E_SYS(getsockopt(any, IPPROTO_IP, IP_MULTICAST_ALL, &all, &all_len));
  E2E_CHECK(all == 0, "IP_MULTICAST_ALL is %d, was set to 0", all);
  struct in_addr got_if = {0};
  socklen_t len = sizeof got_if;
  E2E_SYS(getsockopt(sender, IPPROTO_IP, IP_MULTICAST_IF, &got_if, &len));
  E2E_CHECK(got_if.s_addr == out_if.s_addr, "the sender's IP_MULTICAST_IF is %s",
            inet_ntoa(got_if));
  send_to(sender, "239.255.77.1", p1, "after");
  expect_datagram(any, "after", "the any-source group after the restore");
  send_to(sender, "239.255.77.2", p2, "from 127.0.0.1");
  expect_datagram(ssm, "from 127.0.0.1", "the source-specific group after the restore");
  return e2e_finish();
}
