// File descriptors in flight (SCM_RIGHTS) in unix socket queues. A stream socketpair holds
// "AB", then "CD" with a pipe's read end (data in the pipe), a regular file open at offset 4 and
// an eventfd (counter 7), then "EF", then "GHI" with the same eventfd again, then "JK"; the process
// closed its own pipe read end and file, so those exist only in flight, and kept the eventfd and
// the pipe's write end. A datagram socket bound to a path holds "plain", then "pipe-w" with the
// write end of a second pipe (only in flight), then "file" with a file at offset 2, from an unnamed
// sender. After the restore each recvmsg returns what it would have returned before (a stream
// read stops after a message with fds): the same bytes with the same number of fds, and each fd
// works as the original: the pipe's data and the same pipe, the file's offset, the eventfd's
// counter shared with the one the process kept.
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "scm_rights.h"

static void send_fds(int sock, const char* data, const int* fds, int n, const char* to) {
  E2E_SYS(scm_send(sock, data, fds, n, to));
}

// One recvmsg: must bring exactly `want` and `nfds` fds, stored in `fds`.
static void expect_msg(int sock, const char* want, int* fds, int nfds, const char* what) {
  char data[256];
  int got = 0;
  ssize_t n = scm_recv(sock, data, sizeof data, fds, nfds, &got, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  E2E_CHECK(n == (ssize_t)strlen(want) && memcmp(data, want, strlen(want)) == 0,
            "%s: got %zd bytes '%.*s' (%s), want '%s'", what, n, n > 0 ? (int)n : 0, data,
            n < 0 ? strerror(errno) : "ok", want);
  E2E_CHECK(got == nfds, "%s: %d fds came with it, want %d", what, got, nfds);
}

static void expect_read(int fd, const char* want, const char* what) {
  char buf[64];
  ssize_t n = read(fd, buf, sizeof buf);
  E2E_CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, strlen(want)) == 0,
            "%s: read %zd bytes '%.*s' (%s), want '%s'", what, n, n > 0 ? (int)n : 0, buf,
            n < 0 ? strerror(errno) : "ok", want);
}

static int open_at(const char* name, off_t at) {
  const char* path = e2e_path(name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  E2E_SYS(fd);
  E2E_SYS(write(fd, "0123456789", 10));
  E2E_SYS(lseek(fd, at, SEEK_SET));
  return fd;
}

static uint64_t counter_of(int efd) {
  uint64_t v = 0;
  if (read(efd, &v, sizeof v) != sizeof v) return 0;
  return v;
}

int main(void) {
  e2e_setup();
  int sv[2], p[2], q[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  E2E_SYS(pipe(p));
  E2E_SYS(pipe(q));
  int efd = eventfd(7, EFD_NONBLOCK);
  E2E_SYS(efd);
  int file = open_at("rights-a.data", 4);
  E2E_SYS(write(p[1], "pipe-data", 9));
  E2E_SYS(send(sv[0], "AB", 2, 0));
  int first[3] = {p[0], file, efd};
  send_fds(sv[0], "CD", first, 3, NULL);
  E2E_SYS(send(sv[0], "EF", 2, 0));
  send_fds(sv[0], "GHI", &efd, 1, NULL);
  E2E_SYS(send(sv[0], "JK", 2, 0));
  close(p[0]), close(file);

  const char* path = e2e_path("rights.sock");
  int srv = socket(AF_UNIX, SOCK_DGRAM, 0), cli = socket(AF_UNIX, SOCK_DGRAM, 0);
  E2E_SYS(srv);
  E2E_SYS(cli);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  E2E_SYS(bind(srv, (struct sockaddr*)&a, sizeof a));
  int file2 = open_at("rights-b.data", 2);
  send_fds(cli, "plain", NULL, 0, path);
  send_fds(cli, "pipe-w", &q[1], 1, path);
  send_fds(cli, "file", &file2, 1, path);
  close(q[1]), close(file2);

  e2e_ready();
  e2e_wait_go();

  int got[3], again, w, f2;
  expect_msg(sv[1], "ABCD", got, 3, "stream: the first message with fds");
  expect_msg(sv[1], "EFGHI", &again, 1, "stream: the second message with fds");
  expect_msg(sv[1], "JK", NULL, 0, "stream: the bytes after the last fds");
  char c;
  E2E_CHECK(recv(sv[1], &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "stream: more queued");
  if (got[0] >= 0) {
    expect_read(got[0], "pipe-data", "the pipe's read end in flight");
    E2E_SYS(write(p[1], "more", 4));
    expect_read(got[0], "more", "the same pipe after the restore");
  }
  if (got[1] >= 0) {
    E2E_CHECK(lseek(got[1], 0, SEEK_CUR) == 4, "the file in flight is at offset %ld, want 4",
              (long)lseek(got[1], 0, SEEK_CUR));
    expect_read(got[1], "456789", "the file in flight");
  }
  if (got[2] >= 0) {
    E2E_CHECK(counter_of(got[2]) == 7, "the eventfd in flight lost its counter");
    uint64_t one = 1;
    E2E_SYS(write(efd, &one, sizeof one));
    E2E_CHECK(again >= 0 && counter_of(again) == 1,
              "the eventfd in flight twice is not the one the process kept");
  }

  expect_msg(srv, "plain", NULL, 0, "datagram 1");
  expect_msg(srv, "pipe-w", &w, 1, "datagram 2");
  expect_msg(srv, "file", &f2, 1, "datagram 3");
  if (w >= 0) {
    E2E_SYS(write(w, "via-w", 5));
    expect_read(q[0], "via-w", "the pipe's write end in flight");
  }
  if (f2 >= 0) expect_read(f2, "23456789", "the second file in flight");
  E2E_CHECK(recv(srv, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "datagrams: more queued");
  return e2e_finish();
}
