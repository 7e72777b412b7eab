// Credentials queued with unix socket data (SO_PASSCRED): a receiver that checks who sent each
// message (a daemon authenticating its clients) must read after the restore the same sender's
// PID, UID and GID with each message as before. A stream pair and a datagram pair, each with a
// message from the child (running as UID 4243, GID 4242) and then one from the parent queued at
// the parent's end, none read before the dump: after the restore each recvmsg() returns one
// message (a stream read stops where the sender changes) with its sender's credentials.
#include <sys/socket.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define KID_UID 4243
#define KID_GID 4242

// Reads one message (or stream piece) with its credentials; checks both.
static void expect(int fd, const char* what, const char* text, pid_t pid, uid_t uid, gid_t gid) {
  char buf[128];
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(struct ucred))];
  } control;
  struct iovec iov = {buf, sizeof buf - 1};
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control.space;
  m.msg_controllen = sizeof control.space;
  ssize_t n;
  while ((n = recvmsg(fd, &m, MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (n < 0) {
    e2e_say("FAIL %s: recvmsg: %s", what, strerror(errno));
    ++e2e_failures;
    return;
  }
  buf[n] = 0;
  E2E_CHECK(strcmp(buf, text) == 0, "%s: \"%s\", want \"%s\"", what, buf, text);
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS) {
    e2e_say("FAIL %s: no credentials", what);
    ++e2e_failures;
    return;
  }
  struct ucred u;
  memcpy(&u, CMSG_DATA(c), sizeof u);
  E2E_CHECK(u.pid == pid && u.uid == uid && u.gid == gid,
            "%s: from pid %d uid %u gid %u, want %d %u %u", what, (int)u.pid, u.uid, u.gid,
            (int)pid, uid, gid);
}

int main(void) {
  e2e_setup();
  int s[2], d[2], sync[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, s));
  E2E_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, d));
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sync));
  int on = 1;
  E2E_SYS(setsockopt(s[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on));
  E2E_SYS(setsockopt(d[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on));
  pid_t kid = fork();
  E2E_SYS(kid);
  if (kid == 0) {
    char c;
    if (setgid(KID_GID) < 0 || setuid(KID_UID) < 0) _exit(2);
    if (write(s[1], "child says hi", 13) != 13 || write(d[1], "dgram from child", 16) != 16)
      _exit(3);
    if (write(sync[1], "r", 1) != 1) _exit(4);
    while (read(sync[1], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  char c;
  E2E_CHECK(read(sync[0], &c, 1) == 1, "the child did not send");
  E2E_CHECK(write(s[1], "parent says hi", 14) == 14, "parent's stream write");
  E2E_CHECK(write(d[1], "dgram from parent", 17) == 17, "parent's datagram");
  e2e_ready();
  e2e_wait_go();

  expect(s[0], "stream, first", "child says hi", kid, KID_UID, KID_GID);
  expect(s[0], "stream, second", "parent says hi", getpid(), getuid(), getgid());
  expect(d[0], "datagram, first", "dgram from child", kid, KID_UID, KID_GID);
  expect(d[0], "datagram, second", "dgram from parent", getpid(), getuid(), getgid());
  E2E_CHECK(write(sync[0], "x", 1) == 1, "release the child");
  int status = 0;
  E2E_SYS(waitpid(kid, &status, 0));
  E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child's status %#x", status);
  return e2e_finish();
}
