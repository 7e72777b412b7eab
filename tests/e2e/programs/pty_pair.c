// A terminal multiplexer in small: the parent holds a pseudo-terminal master; its child leads a
// session whose controlling terminal is the slave, with its own child (the "shell") in a group
// of its own as the terminal's foreground group. The terminal has a window size, no echo and an
// unusual interrupt character. Data goes both ways before the dump (nothing is left queued);
// after the restore the parent writes "ping", the shell checks its terminal (session,
// foreground group, window size, termios) and answers through it; the parent checks the
// terminal from its side too.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

#include "e2e_pty.h"

#define ROWS 33
#define COLS 101
#define INTR_CHAR 7

// One line from fd, without its line end ("\n" or "\r\n"); waits at most 10 s.
static int read_line(int fd, char* buf, size_t size) {
  size_t n = 0;
  while (n + 1 < size) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) break;
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (c == '\n') {
      if (n > 0 && buf[n - 1] == '\r') --n;
      buf[n] = 0;
      return 0;
    }
    buf[n++] = c;
  }
  buf[n] = 0;
  return -1;
}

static void say_to(int fd, const char* text) {
  (void)!write(fd, text, strlen(text));
}

// The shell: answers each line on its terminal; "ping" gets what it found of its terminal.
static void shell(pid_t leader) {
  char line[128], reply[256];
  while (read_line(0, line, sizeof line) == 0) {
    if (strcmp(line, "exit") == 0) _exit(0);
    if (strcmp(line, "ping") != 0) {
      say_to(0, "hi\n");
      continue;
    }
    struct winsize ws = {0};
    struct termios t;
    ioctl(0, TIOCGWINSZ, &ws);
    tcgetattr(0, &t);
    const char* bad = NULL;
    if (getsid(0) != leader)
      bad = "session";
    else if (tcgetpgrp(0) != getpgrp())
      bad = "foreground group";
    else if (tcgetsid(0) != leader)
      bad = "terminal's session";
    else if (ws.ws_row != ROWS || ws.ws_col != COLS)
      bad = "window size";
    else if ((t.c_lflag & ECHO) || !(t.c_lflag & ICANON))
      bad = "local flags";
    else if (t.c_cc[VINTR] != INTR_CHAR)
      bad = "interrupt character";
    snprintf(reply, sizeof reply, "pong %s\n", bad ? bad : "ok");
    say_to(0, reply);
  }
  _exit(3);
}

// The session leader: takes the slave as its controlling terminal, starts the shell in a
// foreground group of its own and waits for it.
static void leader(const char* slave_path, int ready) {
  setsid();
  int fd = open(slave_path, O_RDWR);  // a session leader's first terminal becomes its own
  if (fd < 0 || dup2(fd, 0) < 0) _exit(4);
  if (fd != 0) close(fd);
  struct termios t;
  tcgetattr(0, &t);
  t.c_lflag &= ~(tcflag_t)ECHO;
  t.c_cc[VINTR] = INTR_CHAR;
  tcsetattr(0, TCSANOW, &t);
  pid_t me = getpid();
  pid_t sh = fork();
  if (sh == 0) {
    setpgid(0, 0);
    shell(me);
  }
  setpgid(sh, sh);
  signal(SIGTTOU, SIG_IGN);
  tcsetpgrp(0, sh);
  (void)!write(ready, "r", 1);
  close(ready);
  int status = 0;
  while (waitpid(sh, &status, 0) < 0 && errno == EINTR) {
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 5);
}

int main(void) {
  e2e_setup();
  char slave_path[64];
  int master = e2e_open_pty(slave_path, sizeof slave_path);
  struct winsize ws = {ROWS, COLS, 0, 0};
  E2E_SYS(ioctl(master, TIOCSWINSZ, &ws));
  int p[2];
  E2E_SYS(pipe(p));
  pid_t kid = fork();
  if (kid == 0) {
    close(p[0]);
    leader(slave_path, p[1]);
  }
  close(p[1]);
  char c = 0;
  E2E_CHECK(read(p[0], &c, 1) == 1, "the session leader did not get ready");
  // Once the terminal is set up (no echo), "hello" is answered by "hi" and nothing else.
  char line[128] = "";
  say_to(master, "hello\n");
  E2E_CHECK(read_line(master, line, sizeof line) == 0 && strcmp(line, "hi") == 0,
            "answer before the dump: '%s'", line);
  int queued = 0;
  ioctl(master, FIONREAD, &queued);
  E2E_CHECK(queued == 0, "%d bytes left on the terminal", queued);
  e2e_ready();
  e2e_wait_go();
  pid_t sid = 0, fg = 0;
  E2E_CHECK(ioctl(master, TIOCGSID, &sid) == 0 && sid == kid, "terminal's session %d, want %d",
            (int)sid, (int)kid);
  E2E_CHECK(ioctl(master, TIOCGPGRP, &fg) == 0 && fg != kid && fg > 0, "foreground group %d",
            (int)fg);
  say_to(master, "ping\n");
  E2E_CHECK(read_line(master, line, sizeof line) == 0, "no answer to ping");
  E2E_CHECK(strcmp(line, "pong ok") == 0, "the shell answered '%s'", line);
  say_to(master, "exit\n");
  int status = 0;
  E2E_SYS(waitpid(kid, &status, 0));
  E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "session leader's status %#x", status);
  return e2e_finish();
}
