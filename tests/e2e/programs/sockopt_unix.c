// The options of unix socket pairs that ckpt claims to keep (docs/engine.md, unix): SO_SNDBUF,
// SO_RCVBUF, SO_PEEK_OFF and SO_PASSCRED, each end's read back after the restore and compared
// with what it was (ends with options set and ends left at their defaults, stream, datagram and
// seqpacket), and shown in behaviour: a peek starts at the kept offset in the kept queue, and a
// datagram to the SO_PASSCRED end carries its sender's credentials.
#include <sys/socket.h>
#include <sys/un.h>

#include "e2e_prog.h"

enum { kSndBuf, kRcvBuf, kPeekOff, kPassCred, kOpts };
static const char* const kNames[kOpts] = {"SO_SNDBUF", "SO_RCVBUF", "SO_PEEK_OFF", "SO_PASSCRED"};

static int int_opt(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0) return -1000 - errno;
  return v;
}

static void read_options(int fd, int out[kOpts]) {
  out[kSndBuf] = int_opt(fd, SO_SNDBUF);
  out[kRcvBuf] = int_opt(fd, SO_RCVBUF);
  out[kPeekOff] = int_opt(fd, SO_PEEK_OFF);
  out[kPassCred] = int_opt(fd, SO_PASSCRED);
}

static void set_opt(int fd, int opt, int v) {
  E2E_SYS(setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v));
}

struct end {
  const char* name;
  int fd;
  int before[kOpts];
};

int main(void) {
  e2e_setup();
  int a[2], b[2], c[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, a));
  E2E_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, b));
  E2E_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, c));
  // Stream: sizes that differ from the defaults and from each other, bytes queued at a[1] with
  // a peek offset into them.
  set_opt(a[0], SO_SNDBUF, 50000);
  set_opt(a[1], SO_RCVBUF, 70000);
  E2E_SYS(write(a[0], "abcdefgh", 8));
  set_opt(a[1], SO_PEEK_OFF, 3);
  // Datagram: SO_PASSCRED on the end with nothing queued (ckpt refuses it with data queued), a
  // small send buffer and a peek offset of 0 (the default, -1, means no offset) on the other.
  set_opt(b[0], SO_PASSCRED, 1);
  set_opt(b[1], SO_SNDBUF, 4608);
  set_opt(b[1], SO_PEEK_OFF, 0);
  struct end ends[] = {{"stream end 0", a[0], {0}},    {"stream end 1", a[1], {0}},
                       {"datagram end 0", b[0], {0}},  {"datagram end 1", b[1], {0}},
                       {"seqpacket end 0", c[0], {0}}, {"seqpacket end 1", c[1], {0}}};
  int n_ends = (int)(sizeof ends / sizeof ends[0]);
  for (int i = 0; i < n_ends; ++i) read_options(ends[i].fd, ends[i].before);
  // The settings took (what a kernel reports for a buffer is twice what was asked).
  E2E_CHECK(ends[0].before[kSndBuf] == 100000 && ends[1].before[kRcvBuf] == 140000 &&
                ends[3].before[kSndBuf] == 9216,
            "buffer sizes read %d %d %d", ends[0].before[kSndBuf], ends[1].before[kRcvBuf],
            ends[3].before[kSndBuf]);
  E2E_CHECK(ends[1].before[kPeekOff] == 3 && ends[3].before[kPeekOff] == 0 &&
                ends[0].before[kPeekOff] == -1,
            "peek offsets read %d %d %d", ends[1].before[kPeekOff], ends[3].before[kPeekOff],
            ends[0].before[kPeekOff]);
  E2E_CHECK(ends[2].before[kPassCred] == 1 && ends[3].before[kPassCred] == 0,
            "SO_PASSCRED reads %d %d", ends[2].before[kPassCred], ends[3].before[kPassCred]);
  e2e_ready();
  e2e_wait_go();

  for (int i = 0; i < n_ends; ++i) {
    int now[kOpts];
    read_options(ends[i].fd, now);
    for (int k = 0; k < kOpts; ++k)
      E2E_CHECK(now[k] == ends[i].before[k], "%s: %s is %d after the restore, was %d", ends[i].name,
                kNames[k], now[k], ends[i].before[k]);
  }
  // A peek starts at the offset and moves it; a read takes the queue from its start.
  char buf[16] = {0};
  ssize_t n = recv(a[1], buf, 2, MSG_PEEK | MSG_DONTWAIT);
  E2E_CHECK(n == 2 && memcmp(buf, "de", 2) == 0, "a peek at offset 3 gave %zd bytes '%.*s'", n,
            n > 0 ? (int)n : 0, buf);
  E2E_CHECK(int_opt(a[1], SO_PEEK_OFF) == 5, "the peek offset is %d after peeking 2 bytes",
            int_opt(a[1], SO_PEEK_OFF));
  n = recv(a[1], buf, sizeof buf, MSG_DONTWAIT);
  E2E_CHECK(n == 8 && memcmp(buf, "abcdefgh", 8) == 0, "the stream queue read %zd bytes '%.*s'", n,
            n > 0 ? (int)n : 0, buf);
  // The SO_PASSCRED end receives the sender's credentials with a datagram.
  E2E_SYS(send(b[1], "cred", 4, 0));
  char data[8];
  char control[CMSG_SPACE(sizeof(struct ucred))];
  struct iovec iov = {data, sizeof data};
  struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  n = recvmsg(b[0], &msg, MSG_DONTWAIT);
  struct cmsghdr* cm = n == 4 ? CMSG_FIRSTHDR(&msg) : NULL;
  int creds_ok = cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS &&
                 ((struct ucred*)CMSG_DATA(cm))->pid == getpid();
  E2E_CHECK(creds_ok, "a datagram to the SO_PASSCRED end came without its sender's credentials");
  return e2e_finish();
}
