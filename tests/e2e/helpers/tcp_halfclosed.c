// A TCP server with three half-closed connections, dumped and restored by
// tcp_halfclosed_test.cpp, the test being the peer. argv[1] is "4" (127.0.0.1) or "6" (::1),
// argv[2] how many bytes the test sends on the first connection before closing its side, argv[3]
// how many this server writes on the second before closing its own. It prints "PORT n", accepts:
// - "a": the test sends argv[2] bytes of the pattern (byte k is k*7 % 251) and shuts down its
//   side; nothing is read here before "go", so this side is in CLOSE_WAIT with the bytes queued.
// - "b": this server writes argv[3] bytes of the pattern, more than the test's receive window,
//   and shuts down its side: FIN_WAIT1, the bytes and the FIN waiting in its send queue.
// - "c": this server writes "bye" and shuts down its side; the test reads it all: FIN_WAIT2.
// - "d": the test shuts down its side, having made its kernel's acknowledgments of this side's
//   FIN be dropped; this server reads the end of file and shuts down its side: LAST_ACK.
// - "e": the test sends "early"; once it is queued here this server shuts down its side for
//   reading only (SHUT_RD), which sends nothing: ESTABLISHED, with the bytes still to be read.
// then READY, and waits in read() on "c" for "go". Then it reads "a" to its end (every byte
// checked, then end of file: the test's FIN), answers "a:<count>" and closes it, reads "thanks"
// and end of file on "b", end of file on "c", checks that "d" ends up closed once the test lets
// the acknowledgment of its FIN through, reads "early" and then at once end of file on "e" (the
// test has not closed it) and answers "e:eof" there, and waits for SIGUSR2.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "e2e_net.h"
#include "e2e_prog.h"

static unsigned char pattern(long k) {
  return (unsigned char)((k * 7) % 251);
}

static void write_all(int fd, const unsigned char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) {
      e2e_say("FAIL write: %s", w < 0 ? strerror(errno) : "0");
      exit(1);
    }
    p += w;
    n -= (size_t)w;
  }
}

// Reads to end of file into buf (at most cap bytes); -1 on an error, EINTR included.
static long read_to_end(int fd, unsigned char* buf, long cap) {
  long got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, (size_t)(cap - got));
    if (n < 0) {
      e2e_say("FAIL read after %ld bytes: %s", got, strerror(errno));
      return -1;
    }
    if (n == 0) return got;
    got += n;
    if (got == cap) {
      e2e_say("FAIL more than %ld bytes", cap);
      return -1;
    }
  }
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  e2e_setup();
  int family = strcmp(argv[1], "6") == 0 ? AF_INET6 : AF_INET;
  long to_read = atol(argv[2]), to_write = atol(argv[3]);
  int l = e2e_tcp_listen(family, 1 << 20);
  int a = accept(l, NULL, NULL), b = accept(l, NULL, NULL), c = accept(l, NULL, NULL),
      d = accept(l, NULL, NULL), e = accept(l, NULL, NULL);
  E2E_SYS(a);
  E2E_SYS(b);
  E2E_SYS(c);
  E2E_SYS(d);
  E2E_SYS(e);
  unsigned char* big = malloc((size_t)to_write + (size_t)to_read + 1);
  if (!big) return 1;
  for (long k = 0; k < to_write; ++k) big[k] = pattern(k);
  write_all(b, big, (size_t)to_write);
  E2E_SYS(shutdown(b, SHUT_WR));
  write_all(c, (const unsigned char*)"bye", 3);
  E2E_SYS(shutdown(c, SHUT_WR));
  char none[8];
  E2E_CHECK(read(d, none, sizeof none) == 0, "d: no end of file");
  E2E_SYS(shutdown(d, SHUT_WR));
  int queued = 0;
  for (int i = 0; i < 500 && queued < 5; ++i) {
    E2E_SYS(ioctl(e, FIONREAD, &queued));
    if (queued < 5) usleep(10000);
  }
  E2E_CHECK(queued == 5, "e: %d bytes queued, not 5", queued);
  E2E_SYS(shutdown(e, SHUT_RD));
  e2e_ready();

  char go[8] = {0};
  ssize_t n = read(c, go, sizeof go - 1);
  E2E_CHECK(n == 2 && strcmp(go, "go") == 0, "c read %zd bytes \"%s\" (%s), not \"go\"", n, go,
            n < 0 ? strerror(errno) : "");
  long got = read_to_end(a, big, to_read + 1);
  E2E_CHECK(got == to_read, "a: %ld bytes before end of file, not %ld", got, to_read);
  for (long k = 0; k < got; ++k)
    if (big[k] != pattern(k)) {
      e2e_say("FAIL a: byte %ld is %d", k, big[k]);
      e2e_failures++;
      break;
    }
  char reply[64];
  int len = snprintf(reply, sizeof reply, "a:%ld", got);
  write_all(a, (const unsigned char*)reply, (size_t)len);
  E2E_SYS(close(a));
  got = read_to_end(b, big, 64);
  E2E_CHECK(got == 6 && memcmp(big, "thanks", 6) == 0, "b: %ld bytes, not \"thanks\"", got);
  got = read_to_end(c, big, 64);
  E2E_CHECK(got == 0, "c: %ld bytes after go", got);
  struct tcp_info info;
  for (int i = 0; i < 1000; ++i) {
    socklen_t len = sizeof info;
    E2E_SYS(getsockopt(d, IPPROTO_TCP, TCP_INFO, &info, &len));
    if (info.tcpi_state == TCP_CLOSE) break;
    usleep(10000);
  }
  E2E_CHECK(info.tcpi_state == TCP_CLOSE, "d: state %d, not closed", info.tcpi_state);
  got = recv(e, big, 64, MSG_WAITALL);
  E2E_CHECK(got == 5 && memcmp(big, "early", 5) == 0, "e: %ld bytes, not \"early\"", got);
  struct pollfd pe = {e, POLLIN, 0};
  E2E_CHECK(poll(&pe, 1, 2000) == 1, "e: no end of file within 2 s (not shut down for reading)");
  got = read(e, big, 64);
  E2E_CHECK(got == 0, "e: read gave %ld, not end of file", got);
  write_all(e, (const unsigned char*)"e:eof", 5);
  e2e_say("DONE");
  e2e_sleep_until_go();
  return e2e_finish();
}
