// Listening unix sockets and their connections: a stream listener on a path (mode 0640,
// O_NONBLOCK) with an accepted connection holding data both ways, an accepted connection whose
// client bound an abstract name, one whose client sent "bye" and closed, and two connections
// waiting to be accepted; a seqpacket listener on an abstract name
// with a thread blocked in accept(); a listener whose socket file was deleted, with an accepted
// connection; a listener whose socket file was replaced by a regular file. After the restore: every
// name seen from both ends is as before, every queue holds exactly what it held, accept() returns
// the waiting connections in order, the blocked accept() takes a new connection without EINTR, the
// deleted file is still absent, the replacement still there, and new clients connect by path.
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "e2e_prog.h"

struct name {
  socklen_t len;
  char path[sizeof(((struct sockaddr_un*)0)->sun_path)];
};

static socklen_t make_addr(struct sockaddr_un* a, const char* name, size_t len) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path, name, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int listener(int type, const char* name, size_t len) {
  struct sockaddr_un a;
  socklen_t alen = make_addr(&a, name, len);
  int fd = socket(AF_UNIX, type, 0);
  E2E_SYS(fd);
  E2E_SYS(bind(fd, (struct sockaddr*)&a, alen));
  E2E_SYS(listen(fd, 8));
  return fd;
}

static int client(int type, const char* name, size_t len) {
  struct sockaddr_un a;
  socklen_t alen = make_addr(&a, name, len);
  int fd = socket(AF_UNIX, type, 0);
  E2E_SYS(fd);
  E2E_SYS(connect(fd, (struct sockaddr*)&a, alen));
  return fd;
}

static struct name local(int fd) {
  struct name n;
  memset(&n, 0, sizeof n);
  struct sockaddr_un a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if (getsockname(fd, (struct sockaddr*)&a, &len) == 0) n.len = len;
  memcpy(n.path, a.sun_path, sizeof n.path);
  return n;
}

static struct name remote(int fd) {
  struct name n;
  memset(&n, 0, sizeof n);
  struct sockaddr_un a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if (getpeername(fd, (struct sockaddr*)&a, &len) == 0) n.len = len;
  memcpy(n.path, a.sun_path, sizeof n.path);
  return n;
}

static int same(struct name a, struct name b) {
  return a.len == b.len && memcmp(a.path, b.path, sizeof a.path) == 0;
}

// Reads `want`; then nothing more may be there (end of file only where `eof_next`).
static void expect_read_eof(int fd, const char* want, const char* what, int eof_next) {
  char buf[256];
  size_t n = strlen(want), got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0) break;
    got += (size_t)r;
  }
  E2E_CHECK(got == n && memcmp(buf, want, n) == 0, "%s: got %zu bytes '%.*s', want '%s'", what, got,
            (int)got, buf, want);
  ssize_t more = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  E2E_CHECK(eof_next ? more == 0 : more < 0 && errno == EAGAIN, "%s: %zd more bytes after '%s'",
            what, more, want);
}

static void expect_read(int fd, const char* want, const char* what) {
  expect_read_eof(fd, want, what, 0);
}

static void expect_eof(int fd, const char* what) {
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
  E2E_CHECK(r == 0, "%s: read %zd (%s), want end of file", what, r, r < 0 ? strerror(errno) : "");
}

static void say(int fd, const char* text) {
  E2E_CHECK(send(fd, text, strlen(text), MSG_NOSIGNAL) == (ssize_t)strlen(text), "send '%s': %s",
            text, strerror(errno));
}

static int seq_listener;
static volatile int thread_in_accept;
static int thread_accepted = -2, thread_errno;
static char thread_got[16];

static void* accept_thread(void* arg) {
  (void)arg;
  thread_in_accept = 1;
  thread_accepted = accept(seq_listener, NULL, NULL);  // blocked here at dump time
  thread_errno = errno;
  if (thread_accepted >= 0) {
    ssize_t n = recv(thread_accepted, thread_got, sizeof thread_got - 1, 0);
    if (n > 0) thread_got[n] = 0;
  }
  return NULL;
}

int main(void) {
  e2e_setup();
  const char* path = e2e_path("srv.sock");
  const char* gone = e2e_path("gone.sock");
  char abstract[64], client_name[64];
  int alen = snprintf(abstract, sizeof abstract, "%cckpt-e2e-seq-%d", 0, (int)getpid());
  int clen = snprintf(client_name, sizeof client_name, "%cckpt-e2e-cl-%d", 0, (int)getpid());

  int lp = listener(SOCK_STREAM, path, strlen(path));
  E2E_SYS(chmod(path, 0640));
  E2E_SYS(fcntl(lp, F_SETFL, O_NONBLOCK));
  int c1 = client(SOCK_STREAM, path, strlen(path));
  int s1 = accept(lp, NULL, NULL);
  E2E_SYS(s1);
  say(c1, "hello-from-client");
  say(s1, "hi-from-server");

  struct sockaddr_un ca;
  socklen_t calen = make_addr(&ca, client_name, (size_t)clen);
  int cb = socket(AF_UNIX, SOCK_STREAM, 0);
  E2E_SYS(cb);
  E2E_SYS(bind(cb, (struct sockaddr*)&ca, calen));
  struct sockaddr_un sa;
  socklen_t salen = make_addr(&sa, path, strlen(path));
  E2E_SYS(connect(cb, (struct sockaddr*)&sa, salen));
  int sb = accept(lp, NULL, NULL);
  E2E_SYS(sb);

  int cx = client(SOCK_STREAM, path, strlen(path));
  int sx = accept(lp, NULL, NULL);
  E2E_SYS(sx);
  say(cx, "bye");
  close(cx);

  int w1 = client(SOCK_STREAM, path, strlen(path));
  int w2 = client(SOCK_STREAM, path, strlen(path));

  int ld = listener(SOCK_STREAM, gone, strlen(gone));
  int cd = client(SOCK_STREAM, gone, strlen(gone));
  int sd = accept(ld, NULL, NULL);
  E2E_SYS(sd);
  say(cd, "via-deleted");
  E2E_SYS(unlink(gone));

  // A listener whose socket file was replaced by a regular file: the replacement stays.
  const char* replaced = e2e_path("repl.sock");
  int lr = listener(SOCK_STREAM, replaced, strlen(replaced));
  E2E_SYS(unlink(replaced));
  FILE* f = fopen(replaced, "w");
  if (!f || fputs("replacement", f) < 0 || fclose(f) != 0) E2E_CHECK(0, "write %s", replaced);
  struct name n_lr = local(lr);

  seq_listener = listener(SOCK_SEQPACKET, abstract, (size_t)alen);
  struct name n_s1 = local(s1), p_s1 = remote(s1), n_c1 = local(c1), p_c1 = remote(c1);
  struct name n_sb = local(sb), p_sb = remote(sb), n_cb = local(cb), p_cb = remote(cb);
  struct name n_lp = local(lp), n_sd = local(sd), p_cd = remote(cd);
  pthread_t t;
  e2e_thread(&t, accept_thread, NULL);
  while (!thread_in_accept) usleep(1000);
  usleep(50 * 1000);  // let the thread reach accept()
  e2e_ready();
  e2e_wait_go();

  struct stat st;
  E2E_CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0640,
            "%s is not a socket file of mode 0640 (mode %o)", path, st.st_mode);
  E2E_CHECK(stat(gone, &st) < 0 && errno == ENOENT, "the deleted socket file is back");
  char text[32] = "";
  FILE* rf = fopen(replaced, "r");
  E2E_CHECK(rf && fgets(text, sizeof text, rf) && strcmp(text, "replacement") == 0,
            "the file that replaced a socket file now holds '%s'", text);
  if (rf) fclose(rf);
  E2E_CHECK(same(local(lr), n_lr), "the listener whose file was replaced changed its name");
  E2E_CHECK(same(local(s1), n_s1) && same(remote(s1), p_s1), "the accepted end's names changed");
  E2E_CHECK(same(local(c1), n_c1) && same(remote(c1), p_c1), "the client's names changed");
  E2E_CHECK(same(remote(c1), n_lp) && same(local(s1), n_lp), "the connection's names are not %s",
            path);
  E2E_CHECK(n_c1.len == sizeof(sa_family_t) && p_s1.len == sizeof(sa_family_t),
            "the client end was not unnamed");
  E2E_CHECK(same(local(sb), n_sb) && same(remote(sb), p_sb) && same(local(cb), n_cb) &&
                same(remote(cb), p_cb),
            "the names of the bound client's connection changed");
  E2E_CHECK(p_sb.len == (socklen_t)calen && memcmp(p_sb.path, client_name, (size_t)clen) == 0,
            "the bound client's name was not seen by the server");
  E2E_CHECK(same(local(sd), n_sd) && same(remote(cd), p_cd), "the deleted listener's names");
  E2E_CHECK((fcntl(lp, F_GETFL) & O_NONBLOCK) != 0, "the listener lost O_NONBLOCK");

  expect_read(s1, "hello-from-client", "the accepted end");
  expect_read(c1, "hi-from-server", "the client end");
  say(c1, "more"), say(s1, "again");
  expect_read(s1, "more", "the accepted end after the restore");
  expect_read(c1, "again", "the client end after the restore");
  say(cb, "bound"), expect_read(sb, "bound", "the bound client's connection");
  expect_read_eof(sx, "bye", "the connection whose client closed", 1);
  expect_eof(sx, "the connection whose client closed");
  expect_read(sd, "via-deleted", "the deleted listener's connection");
  say(sd, "back"), expect_read(cd, "back", "the deleted listener's client");

  int a1 = accept(lp, NULL, NULL), a2 = accept(lp, NULL, NULL);
  E2E_CHECK(a1 >= 0 && a2 >= 0, "accept of the waiting connections: %d %d", a1, a2);
  E2E_CHECK(accept(lp, NULL, NULL) < 0 && errno == EAGAIN, "more connections were waiting");
  say(w1, "w1"), say(w2, "w2");
  expect_read(a1, "w1", "the first waiting connection");
  expect_read(a2, "w2", "the second waiting connection");
  say(a1, "r1"), expect_read(w1, "r1", "the first waiting client");
  E2E_CHECK(same(local(a1), n_lp), "the waiting connection's name is not the listener's");

  int fresh = client(SOCK_STREAM, path, strlen(path));
  int af = accept(lp, NULL, NULL);
  E2E_CHECK(af >= 0, "a new client by path is not accepted: %s", strerror(errno));
  say(fresh, "new"), expect_read(af, "new", "a new connection by path");
  struct sockaddr_un ga;
  socklen_t galen = make_addr(&ga, gone, strlen(gone));
  int g = socket(AF_UNIX, SOCK_STREAM, 0);
  E2E_CHECK(connect(g, (struct sockaddr*)&ga, galen) < 0 && errno == ENOENT,
            "the deleted listener is reachable by path");

  int knock = client(SOCK_SEQPACKET, abstract, (size_t)alen);
  say(knock, "knock");
  pthread_join(t, NULL);
  E2E_CHECK(thread_accepted >= 0 && strcmp(thread_got, "knock") == 0,
            "the blocked accept returned %d (%s), read '%s'", thread_accepted,
            thread_accepted < 0 ? strerror(thread_errno) : "ok", thread_got);
  return e2e_finish();
}
