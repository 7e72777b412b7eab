// Loopback TCP for the test programs.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "e2e_prog.h"

// A TCP listener on the loopback address of `family` (AF_INET, AF_INET6) at a port the kernel
// picks, its buffers first set to `buffer` bytes when not 0; prints "PORT n".
static inline int e2e_tcp_listen(int family, int buffer) {
  int l = socket(family, SOCK_STREAM, 0);
  E2E_SYS(l);
  if (buffer) {
    E2E_SYS(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer));
    E2E_SYS(setsockopt(l, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer));
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  } else {
    struct sockaddr_in6* a = (struct sockaddr_in6*)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  }
  E2E_SYS(bind(l, (struct sockaddr*)&ss, len));
  E2E_SYS(listen(l, 4));
  E2E_SYS(getsockname(l, (struct sockaddr*)&ss, &len));
  int port = family == AF_INET ? ntohs(((struct sockaddr_in*)&ss)->sin_port)
                               : ntohs(((struct sockaddr_in6*)&ss)->sin6_port);
  e2e_say("PORT %d", port);
  return l;
}
