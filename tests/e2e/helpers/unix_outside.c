// A unix socket at fd 10 connected to a socket outside the dumped processes: argv[1] "dgram" or
// "stream", argv[2] the path the test bound its own socket to. It sends "before" and prints
// READY; after SIGUSR2 it sends "after" without an address, and a stream then reads "reply".
// A datagram socket's peer must still be argv[2].
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "e2e_prog.h"

#define FD 10

int main(int argc, char** argv) {
  e2e_setup();
  if (argc < 3) return 2;
  int type = strcmp(argv[1], "stream") == 0 ? SOCK_STREAM : SOCK_DGRAM;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[2]);
  int fd = socket(AF_UNIX, type, 0);
  E2E_SYS(fd);
  E2E_SYS(dup2(fd, FD));
  close(fd);
  E2E_SYS(connect(FD, (struct sockaddr*)&a, sizeof a));
  E2E_SYS(send(FD, "before", 6, 0));
  e2e_ready();
  e2e_sleep_until_go();
  struct sockaddr_un peer;
  memset(&peer, 0, sizeof peer);
  socklen_t len = sizeof peer;
  // A stream comes back through the socket handed in with --inherit-fd, not to argv[2].
  E2E_CHECK(type == SOCK_STREAM || (getpeername(FD, (struct sockaddr*)&peer, &len) == 0 &&
                                    strcmp(peer.sun_path, argv[2]) == 0),
            "the peer is '%s', want '%s'", peer.sun_path, argv[2]);
  E2E_CHECK(send(FD, "after", 5, MSG_NOSIGNAL) == 5, "send after the restore: %s", strerror(errno));
  if (type == SOCK_STREAM) {
    char buf[8] = "";
    E2E_CHECK(recv(FD, buf, 5, MSG_WAITALL) == 5 && memcmp(buf, "reply", 5) == 0,
              "no reply after the restore");
  }
  return e2e_finish();
}
