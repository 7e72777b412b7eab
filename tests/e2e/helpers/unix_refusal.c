// A unix socket that `ckpt dump` must refuse (argv[1]), always at fd 10:
//   "outside"  a stream socketpair end in the child whose peer stays in the parent (the test
//              dumps the child alone);
//   "listen"   a listening stream socket bound to $E2E_DIR/listen.sock;
//   "bound"    a datagram socket bound to an abstract name;
//   "rights"   a datagram socketpair end in the child with a unix socket's fd queued (SCM_RIGHTS:
//              a socket in flight, whose own queue could hold more, is not saved);
//   "rights-timer"  the same with a pipe's read end and a timerfd in one message (a timerfd is
//              not saved in flight);
//   "oob"      a stream socketpair end with an out-of-band byte queued (MSG_OOB);
//   "closed"   a stream socketpair end with data queued, its peer closed (saved since: the test
//              dumps and restores it);
//   "waiting"  a listening stream socket on an abstract name with a connection waiting whose
//              client already sent "early";
//   "waiting-closed"  the same, the client closed after sending.
// "listen" and "bound" are saved since, too: their tests dump and restore them.
// After READY and SIGUSR2 the parent checks the socket still works (a refused dump must not
// have disturbed it) and prints PASS.
#include <stddef.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "scm_rights.h"

#define FD 10

static void at_fd10(int fd) {
  if (fd != FD) {
    E2E_SYS(dup2(fd, FD));
    close(fd);
  }
}

static int child_outside(void) {
  char buf[8];
  if (recv(FD, buf, sizeof buf, 0) != 4 || memcmp(buf, "ping", 4) != 0) return 2;
  return send(FD, "pong", 4, 0) == 4 ? 0 : 3;
}

// Takes the socket (or, with `timer`, a pipe's read end and a timerfd) from the queue and reads
// what the parent wrote into its peer (and the timer's expiration).
static int child_rights(int ctl, int timer) {
  char c;
  if (read(ctl, &c, 1) != 1) return 2;
  char data[4];
  int passed[2], got = 0;
  if (scm_recv(FD, data, sizeof data, passed, 2, &got, 0) != 1) return 3;
  if (got == 0) return 4;
  char buf[8];
  if (read(passed[0], buf, sizeof buf) != 5 || memcmp(buf, "hello", 5) != 0) return 5;
  return !timer || read(passed[1], buf, sizeof buf) == 8 ? 0 : 6;
}

static void send_fds(int sock, const int* fds, int n) {
  E2E_SYS(scm_send(sock, "x", fds, n, NULL));
}

static void bind_to(int fd, const char* name, size_t len) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, name, len);
  E2E_SYS(
      bind(fd, (struct sockaddr*)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)));
}

static int run_with_child(const char* mode) {
  int sv[2], ctl[2], data[2];
  E2E_SYS(socketpair(AF_UNIX, strcmp(mode, "outside") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0, sv));
  E2E_SYS(pipe(ctl));
  int timer = strcmp(mode, "rights-timer") == 0;
  if (timer)
    E2E_SYS(pipe(data));
  else
    E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, data));
  pid_t c = fork();
  E2E_SYS(c);
  if (c == 0) {
    close(sv[0]), close(ctl[1]), close(data[0]), close(data[1]);
    at_fd10(sv[1]);
    _exit(strcmp(mode, "outside") == 0 ? child_outside() : child_rights(ctl[0], timer));
  }
  close(sv[1]), close(ctl[0]);
  if (strcmp(mode, "rights") == 0) send_fds(sv[0], data, 1);
  if (timer) {
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    E2E_SYS(tfd);
    struct itimerspec once = {{0, 0}, {0, 1}};
    E2E_SYS(timerfd_settime(tfd, 0, &once, NULL));
    int both[2] = {data[0], tfd};
    send_fds(sv[0], both, 2);
    close(tfd);
  }
  if (strcmp(mode, "outside") != 0) E2E_SYS(write(data[1], "hello", 5));
  close(data[0]), close(data[1]);
  e2e_ready();
  e2e_sleep_until_go();
  if (strcmp(mode, "outside") == 0) {
    char buf[8];
    E2E_CHECK(send(sv[0], "ping", 4, 0) == 4, "ping: %s", strerror(errno));
    E2E_CHECK(recv(sv[0], buf, sizeof buf, 0) == 4 && memcmp(buf, "pong", 4) == 0, "no pong");
  } else {
    E2E_CHECK(write(ctl[1], "g", 1) == 1, "wake the child: %s", strerror(errno));
  }
  int st = 0;
  E2E_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "the child ended with status 0x%x", st);
  return e2e_finish();
}

// One process, both ends (or the one left) of a stream pair: saved, were it not for what is
// queued at fd 10 or its peer being gone.
static int run_pair(const char* mode) {
  int sv[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  E2E_SYS(send(sv[0], "ab", 2, 0));
  if (strcmp(mode, "oob") == 0) E2E_SYS(send(sv[0], "X", 1, MSG_OOB));
  if (strcmp(mode, "closed") == 0) close(sv[0]);
  at_fd10(sv[1]);
  e2e_ready();
  e2e_sleep_until_go();
  char buf[8];
  if (strcmp(mode, "oob") == 0) {
    E2E_CHECK(recv(FD, buf, 1, MSG_OOB) == 1 && buf[0] == 'X', "the out-of-band byte is gone");
    E2E_CHECK(recv(FD, buf, sizeof buf, 0) == 2 && memcmp(buf, "ab", 2) == 0, "the data is gone");
  } else {
    E2E_CHECK(recv(FD, buf, sizeof buf, 0) == 2 && memcmp(buf, "ab", 2) == 0, "the data is gone");
    E2E_CHECK(recv(FD, buf, sizeof buf, 0) == 0, "no end of file after the peer closed");
  }
  return e2e_finish();
}

// The connection's data is in a socket no process holds yet: ckpt cannot read it unaccepted.
static int run_waiting(int close_client) {
  char name[64];
  int len = snprintf(name, sizeof name, "%cckpt-e2e-waiting-%d", 0, (int)getpid());
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  E2E_SYS(l);
  at_fd10(l);
  bind_to(FD, name, (size_t)len);
  E2E_SYS(listen(FD, 4));
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, name, (size_t)len);
  E2E_SYS(
      connect(c, (struct sockaddr*)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)));
  E2E_SYS(send(c, "early", 5, 0));
  if (close_client) close(c);
  e2e_ready();
  e2e_sleep_until_go();
  int s = accept(FD, NULL, NULL);
  char buf[8];
  E2E_CHECK(s >= 0 && recv(s, buf, sizeof buf, 0) == 5 && memcmp(buf, "early", 5) == 0,
            "the waiting connection lost its data");
  return e2e_finish();
}

int main(int argc, char** argv) {
  e2e_setup();
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "waiting") == 0) return run_waiting(0);
  if (strcmp(mode, "waiting-closed") == 0) return run_waiting(1);
  if (strcmp(mode, "outside") == 0 || strncmp(mode, "rights", 6) == 0) return run_with_child(mode);
  if (strcmp(mode, "oob") == 0 || strcmp(mode, "closed") == 0) return run_pair(mode);
  int fd = socket(AF_UNIX, strcmp(mode, "listen") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0);
  E2E_SYS(fd);
  at_fd10(fd);
  const char* path = e2e_path("listen.sock");
  char abstract[64];
  int alen = snprintf(abstract, sizeof abstract, "%cckpt-e2e-bound-%d", 0, (int)getpid());
  if (strcmp(mode, "listen") == 0) {
    bind_to(FD, path, strlen(path));
    E2E_SYS(listen(FD, 4));
  } else {
    bind_to(FD, abstract, (size_t)alen);
  }
  e2e_ready();
  e2e_sleep_until_go();
  int other = socket(AF_UNIX, strcmp(mode, "listen") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  size_t len = strcmp(mode, "listen") == 0 ? strlen(path) : (size_t)alen;
  memcpy(a.sun_path, strcmp(mode, "listen") == 0 ? path : abstract, len);
  E2E_CHECK(connect(other, (struct sockaddr*)&a,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) == 0,
            "connect: %s", strerror(errno));
  if (strcmp(mode, "listen") == 0) {
    E2E_CHECK(accept(FD, NULL, NULL) >= 0, "accept: %s", strerror(errno));
  } else {
    char c = 0;
    E2E_CHECK(send(other, "d", 1, 0) == 1 && recv(FD, &c, 1, 0) == 1 && c == 'd',
              "the bound socket does not receive");
  }
  return e2e_finish();
}
