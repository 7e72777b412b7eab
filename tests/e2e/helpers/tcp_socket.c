// Holds one kind of socket for the socket tests (socket_test.cpp): argv[1] is "listen" (a TCP
// listener on 127.0.0.1), "waiting" (a listener with a connection waiting to be accepted),
// "connected" (a connected TCP socket, its listener closed), "udp", "unix" (an unconnected
// unix stream socket), "raw" (a raw ICMP socket with packets waiting: it pinged 127.0.0.1 and
// read nothing) or "packet" (an AF_PACKET socket).
// Prints "PORT n" (the TCP or UDP port on 127.0.0.1) and READY, then sleeps until killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "e2e_prog.h"

static int bound(int type, struct sockaddr_in* a) {
  int fd = socket(AF_INET, type, 0);
  E2E_SYS(fd);
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  E2E_SYS(bind(fd, (struct sockaddr*)a, sizeof *a));
  socklen_t len = sizeof *a;
  E2E_SYS(getsockname(fd, (struct sockaddr*)a, &len));
  return fd;
}

static void connect_to(const struct sockaddr_in* a) {
  int c = socket(AF_INET, SOCK_STREAM, 0);
  E2E_SYS(c);
  E2E_SYS(connect(c, (const struct sockaddr*)a, sizeof *a));
}

// Sends an ICMP echo request to 127.0.0.1: the socket gets the request and the reply.
static void ping_loopback(int fd) {
  E2E_SYS(fd);
  unsigned char req[8] = {8, 0, 0, 0, 0x12, 0x34, 0, 1};  // type 8 (echo), id, sequence
  unsigned sum = 0;
  for (int i = 0; i < 8; i += 2) sum += (unsigned)(req[i] << 8 | req[i + 1]);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = ~sum & 0xffff;
  req[2] = (unsigned char)(sum >> 8);
  req[3] = (unsigned char)sum;
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  E2E_SYS(sendto(fd, req, sizeof req, 0, (struct sockaddr*)&to, sizeof to));
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "listen";
  struct sockaddr_in a;
  if (strcmp(mode, "unix") == 0) {
    E2E_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
    a.sin_port = 0;
  } else if (strcmp(mode, "raw") == 0 || strcmp(mode, "packet") == 0) {
    if (strcmp(mode, "raw") == 0)
      ping_loopback(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    else
      E2E_SYS(socket(AF_PACKET, SOCK_RAW, 0));
    a.sin_port = 0;
  } else if (strcmp(mode, "udp") == 0) {
    bound(SOCK_DGRAM, &a);
  } else {
    int l = bound(SOCK_STREAM, &a);
    E2E_SYS(listen(l, 8));
    if (strcmp(mode, "waiting") == 0) connect_to(&a);
    if (strcmp(mode, "connected") == 0) {
      connect_to(&a);
      E2E_SYS(accept(l, NULL, NULL));
      close(l);
    }
  }
  e2e_say("PORT %d", ntohs(a.sin_port));
  e2e_ready();
  for (;;) pause();
}
