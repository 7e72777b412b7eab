// File descriptors sent and received over unix sockets (SCM_RIGHTS) by the test programs.
#pragma once
#include <sys/socket.h>
#include <sys/un.h>

#include "e2e_prog.h"

#define SCM_MAX_FDS 8

// One sendmsg of `data` carrying `n` fds (none when 0), to the socket bound at the path `to`
// when given; returns what sendmsg returns.
static inline ssize_t scm_send(int sock, const char* data, const int* fds, int n, const char* to) {
  char control[CMSG_SPACE(sizeof(int) * SCM_MAX_FDS)];
  memset(control, 0, sizeof control);
  struct iovec iov = {(void*)data, strlen(data)};
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (to) {
    snprintf(a.sun_path, sizeof a.sun_path, "%s", to);
    m.msg_name = &a;
    m.msg_namelen = sizeof a;
  }
  if (n > 0 && n <= SCM_MAX_FDS) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr* h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)n);
  }
  return sendmsg(sock, &m, 0);
}

// One recvmsg into data[len] with `flags`; the fds that came with it go to fds[] (up to `max`,
// the rest set to -1) and their number to *got. Returns what recvmsg returns.
static inline ssize_t scm_recv(int sock, char* data, size_t len, int* fds, int max, int* got,
                               int flags) {
  char control[CMSG_SPACE(sizeof(int) * SCM_MAX_FDS)];
  struct iovec iov = {data, len};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n = recvmsg(sock, &m, flags);
  *got = 0;
  for (struct cmsghdr* h = n < 0 ? NULL : CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count; ++i, ++*got)
      if (*got < max) memcpy(&fds[*got], CMSG_DATA(h) + (size_t)i * sizeof(int), sizeof(int));
  }
  for (int i = *got; i < max; ++i) fds[i] = -1;
  return n;
}
