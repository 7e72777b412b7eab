// An event-loop TCP server, as most are (tcp_close_test.cpp): one thread, epoll, non-blocking
// clients. argv[1] is "4" (127.0.0.1) or "6" (::1). It prints "PORT n" and READY, then answers
// every message "m" with "echo:m #k", k counting the messages of all clients so far (kept in
// memory: a restore from a checkpoint goes on counting, a fresh start would not). A client whose
// socket reports an error, a hang-up or end of file is closed, with a line "CLOSED <why>". With
// argv[2] "late" it accepts nothing until SIGUSR1, so that connections wait in its accept queue.
// After SIGUSR2 it exits 0 (PASS).
#include <fcntl.h>
#include <sys/epoll.h>

#include "e2e_net.h"
#include "e2e_prog.h"

static long answered;
static volatile sig_atomic_t accepting;

static void on_usr1(int sig) {
  (void)sig;
  accepting = 1;
}

static void serve(int ep, int fd) {
  char buf[512], out[600];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = 0;
    int len = snprintf(out, sizeof out, "echo:%s #%ld", buf, ++answered);
    if (write(fd, out, (size_t)len) == len) return;
    e2e_say("CLOSED write: %s", strerror(errno));
  } else if (n == 0) {
    e2e_say("CLOSED EOF");
  } else if (errno == EAGAIN) {
    return;
  } else {
    e2e_say("CLOSED %s", strerror(errno));
  }
  E2E_SYS(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL));
  close(fd);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  e2e_setup();
  int family = strcmp(argv[1], "6") == 0 ? AF_INET6 : AF_INET;
  int l = e2e_tcp_listen(family, 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  E2E_SYS(ep);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  accepting = argc < 3 || strcmp(argv[2], "late") != 0;
  int listening = 0;
  e2e_ready();
  while (!e2e_go) {
    if (accepting && !listening) {
      struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
      E2E_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev));
      listening = 1;
    }
    struct epoll_event got[8];
    int n = epoll_wait(ep, got, 8, -1);
    if (n < 0 && errno == EINTR) continue;
    E2E_SYS(n);
    for (int i = 0; i < n; ++i) {
      int fd = got[i].data.fd;
      if (fd != l) {
        serve(ep, fd);
        continue;
      }
      int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      E2E_SYS(c);
      struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
      E2E_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev));
    }
  }
  return e2e_finish();
}
