// A pseudo-terminal master in packet mode (TIOCPKT, as remote-login servers and some terminal
// emulators use it) with output its reader has not read yet at the dump: the child, leading a
// session on the slave with echo off, writes a line before the dump that the parent reads only
// after the restore. Then each read of the master must still start with its status byte
// (TIOCPKT_DATA) followed by the line exactly as written (with its "\r\n"), packet mode must still
// be on, no status packet may have appeared, and a "ping" still gets its "pong".
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>

#include "e2e_pty.h"

static const char kEarly[] = "early output\r\n";

// One packet from the master: its status byte and what follows; waits at most 10 s.
static ssize_t read_packet(int master, char* buf, size_t size) {
  struct pollfd p = {master, POLLIN | POLLPRI, 0};
  if (poll(&p, 1, 10000) <= 0) return -1;
  ssize_t n;
  while ((n = read(master, buf, size - 1)) < 0 && errno == EINTR) {
  }
  if (n >= 0) buf[n] = 0;
  return n;
}

static void child(const char* slave_path, int go) {
  setsid();
  int fd = open(slave_path, O_RDWR);  // becomes its controlling terminal
  if (fd < 0) _exit(4);
  struct termios t;
  tcgetattr(fd, &t);
  t.c_lflag &= ~(tcflag_t)ECHO;
  tcsetattr(fd, TCSANOW, &t);
  char c;
  if (write(go, "r", 1) != 1 || read(go, &c, 1) != 1) _exit(5);
  (void)!write(fd, "early output\n", 13);
  char line[64];
  for (;;) {
    ssize_t n = read(fd, line, sizeof line - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(6);
    line[n] = 0;
    if (strcmp(line, "exit\n") == 0) _exit(0);
    if (strcmp(line, "ping\n") == 0) (void)!write(fd, "pong\n", 5);
  }
}

int main(void) {
  e2e_setup();
  char slave_path[64];
  int master = e2e_open_pty(slave_path, sizeof slave_path);
  int s[2];
  E2E_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, s));
  pid_t kid = fork();
  E2E_SYS(kid);
  if (kid == 0) {
    close(s[0]);
    child(slave_path, s[1]);
  }
  close(s[1]);
  char c;
  E2E_CHECK(read(s[0], &c, 1) == 1, "the child did not get ready");
  // Only once the child has set its terminal up: a change made in packet mode queues a status.
  int on = 1;
  E2E_SYS(ioctl(master, TIOCPKT, &on));
  E2E_CHECK(write(s[0], "g", 1) == 1, "start the child");
  int queued = 0;
  for (int i = 0; i < 1000 && queued < (int)strlen(kEarly); ++i) {
    ioctl(master, FIONREAD, &queued);
    usleep(2000);
  }
  E2E_CHECK(queued == (int)strlen(kEarly), "%d bytes waiting at the master, want %zu", queued,
            strlen(kEarly));
  e2e_ready();
  e2e_wait_go();

  int mode = 0;
  E2E_CHECK(ioctl(master, TIOCGPKT, &mode) == 0 && mode == 1, "packet mode is %d", mode);
  char buf[128];
  ssize_t n = read_packet(master, buf, sizeof buf);
  E2E_CHECK(
      n == (ssize_t)strlen(kEarly) + 1 && buf[0] == TIOCPKT_DATA && strcmp(buf + 1, kEarly) == 0,
      "first packet: %zd bytes, status %d, \"%s\"", n, n > 0 ? buf[0] : -1, n > 1 ? buf + 1 : "");
  E2E_CHECK(write(master, "ping\n", 5) == 5, "write ping");
  n = read_packet(master, buf, sizeof buf);
  E2E_CHECK(n == 7 && buf[0] == TIOCPKT_DATA && strcmp(buf + 1, "pong\r\n") == 0,
            "answer packet: %zd bytes, status %d, \"%s\"", n, n > 0 ? buf[0] : -1,
            n > 1 ? buf + 1 : "");
  E2E_CHECK(write(master, "exit\n", 5) == 5, "write exit");
  int status = 0;
  E2E_SYS(waitpid(kid, &status, 0));
  E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child's status %#x", status);
  return e2e_finish();
}
