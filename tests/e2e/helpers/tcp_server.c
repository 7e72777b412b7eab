// A TCP server whose connections are dumped and restored (tcp_established_test.cpp), the test
// being its peer. argv[1] is "4" (127.0.0.1) or "6" (::1); argv[2] is how many bytes the test
// sends on the first connection, argv[3] how many this server writes on it; with argv[4] "refused"
// it also holds a packet socket (which ckpt refuses) after the connections. It prints "PORT n" and
// accepts two connections, then READY:
// - "bulk": a writer thread writes argv[3] bytes of the pattern (byte k is k*7 % 251) while the
//   test does not read, so they wait in this side's send queue; this side reads nothing until
//   SIGUSR2, so what the test sent waits in its receive queue. After SIGUSR2 it reads argv[2]
//   bytes and checks every one.
// - "echo": a thread blocked in read() answers each message "m" with "echo:m"; a read or write
//   failing (EINTR included) is a FAIL.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "e2e_net.h"
#include "e2e_prog.h"

static int bulk_fd, echo_fd;
static long to_read, to_write;
static volatile long written;
static volatile int writer_done, writer_errno;

static unsigned char pattern(long k) {
  return (unsigned char)((k * 7) % 251);
}

static void* writer(void* arg) {
  (void)arg;
  unsigned char buf[65536];
  while (written < to_write) {
    long n = to_write - written < (long)sizeof buf ? to_write - written : (long)sizeof buf;
    for (long i = 0; i < n; ++i) buf[i] = pattern(written + i);
    ssize_t w = write(bulk_fd, buf, (size_t)n);
    if (w < 0) {
      writer_errno = errno;
      break;
    }
    written += w;
  }
  writer_done = 1;
  return NULL;
}

static void* echo(void* arg) {
  (void)arg;
  char buf[512], out[600];
  for (;;) {
    ssize_t n = read(echo_fd, buf, sizeof buf - 1);
    if (n == 0) return NULL;
    if (n < 0) {
      e2e_say("FAIL echo read: %s", strerror(errno));
      exit(1);
    }
    buf[n] = 0;
    int len = snprintf(out, sizeof out, "echo:%s", buf);
    if (write(echo_fd, out, (size_t)len) != len) {
      e2e_say("FAIL echo write: %s", strerror(errno));
      exit(1);
    }
  }
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  e2e_setup();
  int family = strcmp(argv[1], "6") == 0 ? AF_INET6 : AF_INET;
  to_read = atol(argv[2]);
  to_write = atol(argv[3]);
  int l = e2e_tcp_listen(family, 0);
  bulk_fd = accept(l, NULL, NULL);
  E2E_SYS(bulk_fd);
  echo_fd = accept(l, NULL, NULL);
  E2E_SYS(echo_fd);
  int one = 1, idle = 77;
  E2E_SYS(setsockopt(echo_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  E2E_SYS(setsockopt(echo_fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
  E2E_SYS(setsockopt(echo_fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle));
  if (argc > 4 && strcmp(argv[4], "refused") == 0) E2E_SYS(socket(AF_PACKET, SOCK_RAW, 0));
  pthread_t w, e;
  e2e_thread(&w, writer, NULL);
  e2e_thread(&e, echo, NULL);
  e2e_ready();
  e2e_sleep_until_go();
  unsigned char buf[65536];
  long got = 0;
  while (got < to_read) {
    ssize_t n = read(bulk_fd, buf, sizeof buf);
    if (n <= 0) {
      e2e_say("FAIL bulk read after %ld bytes: %s", got, n < 0 ? strerror(errno) : "EOF");
      break;
    }
    for (ssize_t i = 0; i < n; ++i)
      if (buf[i] != pattern(got + i)) {
        e2e_say("FAIL bulk byte %ld is %d, not %d", got + i, buf[i], pattern(got + i));
        return 1;
      }
    got += n;
  }
  E2E_CHECK(got == to_read, "read %ld of %ld bytes", got, to_read);
  pthread_join(w, NULL);
  E2E_CHECK(written == to_write && writer_errno == 0, "wrote %ld of %ld bytes: %s", written,
            to_write, strerror(writer_errno));
  int v = 0;
  socklen_t len = sizeof v;
  E2E_SYS(getsockopt(echo_fd, IPPROTO_TCP, TCP_NODELAY, &v, &len));
  E2E_CHECK(v == 1, "TCP_NODELAY is %d after restore", v);
  E2E_SYS(getsockopt(echo_fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len));
  E2E_CHECK(v == 77, "TCP_KEEPIDLE is %d after restore", v);
  return e2e_finish();
}
