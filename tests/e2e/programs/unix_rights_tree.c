// A file descriptor in flight that a later-dumped process also holds: the child made an eventfd
// (counter 5), sent it over a stream socketpair to the parent and kept it; the parent has not
// received it yet. The parent's socket is dumped first (parents first), so the fd in flight is
// saved before the child's own descriptor, which must then be found to be the same open file.
// After the restore the parent receives it, sees the counter, asks the child (blocked in recv)
// to write 1 into its own eventfd and reads that 1 through the fd it received.
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "scm_rights.h"

static int child(int sock) {
  int efd = eventfd(5, EFD_NONBLOCK);
  if (efd < 0) return 2;
  if (scm_send(sock, "E", &efd, 1, NULL) != 1) return 3;
  char c;
  if (recv(sock, &c, 1, 0) != 1 || c != 'g') return 4;  // blocked here at dump
  uint64_t one = 1;
  if (write(efd, &one, sizeof one) != sizeof one) return 5;
  return send(sock, "d", 1, 0) == 1 ? 0 : 6;
}

int main(void) {
  e2e_setup();
  int sv[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  pid_t c = fork();
  E2E_SYS(c);
  if (c == 0) {
    close(sv[0]);
    _exit(child(sv[1]));
  }
  close(sv[1]);
  char c0;
  E2E_CHECK(recv(sv[0], &c0, 1, MSG_PEEK) == 1, "nothing came from the child");
  e2e_ready();
  e2e_wait_go();

  char data[4];
  int efd = -1, got = 0;
  ssize_t n = scm_recv(sv[0], data, sizeof data, &efd, 1, &got, MSG_DONTWAIT);
  E2E_CHECK(n == 1 && data[0] == 'E' && got == 1, "the message: %zd bytes, %d fds", n, got);
  E2E_CHECK(efd >= 0, "no fd came with the message");
  uint64_t v = 0;
  E2E_CHECK(efd >= 0 && read(efd, &v, sizeof v) == sizeof v && v == 5,
            "the eventfd in flight has counter %llu, want 5", (unsigned long long)v);
  E2E_CHECK(send(sv[0], "g", 1, 0) == 1, "send go: %s", strerror(errno));
  char d;
  E2E_CHECK(recv(sv[0], &d, 1, 0) == 1 && d == 'd', "the child did not answer");
  v = 0;
  E2E_CHECK(efd >= 0 && read(efd, &v, sizeof v) == sizeof v && v == 1,
            "the child's eventfd and the one received are not the same (counter %llu)",
            (unsigned long long)v);
  int status = 0;
  E2E_CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the child failed (status %#x)", status);
  return e2e_finish();
}
