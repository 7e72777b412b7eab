// The options every kind of socket has survive dump and restore: SO_RCVTIMEO and SO_SNDTIMEO on
// a unix stream pair, a UDP socket and a listening TCP socket, each with its own receive timeout
// (and the UDP socket a send timeout); SO_RCVLOWAT and SO_LINGER on the unix pair's other end.
// After restore each reads back what it was, a receive on an empty socket (an accept on the
// listener) gives up with EAGAIN after about its timeout instead of waiting forever, and a
// receive with SO_RCVLOWAT 4 gets 4 bytes in one call, not the first one alone.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "e2e_prog.h"

static void set_timeout(int fd, int opt, long usec) {
  struct timeval tv = {usec / 1000000, usec % 1000000};
  E2E_SYS(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv));
}

static long timeout_of(int fd, int opt) {
  struct timeval tv = {0, 0};
  socklen_t len = sizeof tv;
  if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) < 0) return -1;
  return tv.tv_sec * 1000000L + tv.tv_usec;
}

// How long a receive (or accept) on the empty socket waits, in seconds; -1 when it did not end
// with EAGAIN.
static double waited(int fd, int listener) {
  char c;
  double start = e2e_now();
  int r = listener ? accept(fd, NULL, NULL) : (int)recv(fd, &c, 1, 0);
  if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return -1;
  return e2e_now() - start;
}

int main(void) {
  e2e_setup();
  int pair[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  E2E_SYS(udp);
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  E2E_SYS(tcp);
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  E2E_SYS(bind(udp, (struct sockaddr*)&lo, sizeof lo));
  E2E_SYS(bind(tcp, (struct sockaddr*)&lo, sizeof lo));
  E2E_SYS(listen(tcp, 4));
  struct {
    const char* name;
    int fd, listener;
    long rcv, snd;
    long rcv_read, snd_read;  // what the kernel made of them (it counts in ticks)
  } socks[] = {{"unix stream", pair[0], 0, 300000, 0, 0, 0},
               {"UDP", udp, 0, 200000, 700000, 0, 0},
               {"TCP listener", tcp, 1, 250000, 0, 0, 0}};
  for (int i = 0; i < 3; ++i) {
    set_timeout(socks[i].fd, SO_RCVTIMEO, socks[i].rcv);
    if (socks[i].snd) set_timeout(socks[i].fd, SO_SNDTIMEO, socks[i].snd);
    socks[i].rcv_read = timeout_of(socks[i].fd, SO_RCVTIMEO);
    socks[i].snd_read = timeout_of(socks[i].fd, SO_SNDTIMEO);
    E2E_CHECK(socks[i].rcv_read >= socks[i].rcv && socks[i].rcv_read < socks[i].rcv + 20000,
              "%s: SO_RCVTIMEO reads %ld us, set %ld", socks[i].name, socks[i].rcv_read,
              socks[i].rcv);
  }
  int lowat = 4;
  struct linger lg = {1, 7};
  E2E_SYS(setsockopt(pair[1], SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat));
  E2E_SYS(setsockopt(pair[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
  e2e_ready();
  e2e_wait_go();

  int lowat_now = 0;
  struct linger lg_now = {0, 0};
  socklen_t len = sizeof lowat_now;
  E2E_SYS(getsockopt(pair[1], SOL_SOCKET, SO_RCVLOWAT, &lowat_now, &len));
  len = sizeof lg_now;
  E2E_SYS(getsockopt(pair[1], SOL_SOCKET, SO_LINGER, &lg_now, &len));
  E2E_CHECK(lowat_now == 4, "SO_RCVLOWAT is %d after restore, was 4", lowat_now);
  E2E_CHECK(lg_now.l_onoff && lg_now.l_linger == 7, "SO_LINGER is %d/%d after restore, was 1/7",
            lg_now.l_onoff, lg_now.l_linger);
  // Two bytes, then two more a moment later: with the low mark at 4 one recv takes all four.
  E2E_SYS(write(pair[0], "ab", 2));
  pid_t writer = fork();
  E2E_SYS(writer);
  if (writer == 0) {
    struct timespec t = {0, 100 * 1000 * 1000};
    nanosleep(&t, NULL);
    _exit(write(pair[0], "cd", 2) == 2 ? 0 : 1);
  }
  char got[8] = {0};
  ssize_t n = recv(pair[1], got, sizeof got, 0);
  E2E_CHECK(n == 4 && memcmp(got, "abcd", 4) == 0,
            "a recv with SO_RCVLOWAT 4 returned %zd bytes \"%.*s\"", n, (int)(n > 0 ? n : 0), got);
  waitpid(writer, NULL, 0);

  for (int i = 0; i < 3; ++i) {
    long rcv = timeout_of(socks[i].fd, SO_RCVTIMEO), snd = timeout_of(socks[i].fd, SO_SNDTIMEO);
    E2E_CHECK(rcv == socks[i].rcv_read, "%s: SO_RCVTIMEO is %ld us after restore, was %ld",
              socks[i].name, rcv, socks[i].rcv_read);
    E2E_CHECK(snd == socks[i].snd_read, "%s: SO_SNDTIMEO is %ld us after restore, was %ld",
              socks[i].name, snd, socks[i].snd_read);
    double w = waited(socks[i].fd, socks[i].listener);
    double want = (double)socks[i].rcv / 1e6;
    E2E_CHECK(w >= want * 0.9 && w < want + 2, "%s: a receive on it waited %.3f s, want %.3f",
              socks[i].name, w, want);
  }
  return e2e_finish();
}
