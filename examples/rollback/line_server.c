/* A line-based TCP key-value server that survives requests that crash it.
 *
 * Usage: rollback-line_server [--port N] [--retry]   (port 0, the default, picks one; the
 * server prints "listening PORT")
 *
 * Requests, one per line, answered with one line:
 *   SET key value   -> OK             GET key  -> VALUE v | NONE
 *   ADD key n       -> VALUE sum      HELLO name -> HELLO name (n)
 *   STATS           -> STATS served=.. rejected=.. recoveries=.. bad=.. checkpoints=.. pid=..
 *   QUIT            -> (closes the connection)
 *
 * HELLO has a bug: the name is copied into a 32-byte field with no length check, so a long name
 * overwrites the pointer that follows it and part of the key-value store, and the server then
 * crashes on that pointer (SIGSEGV). A malicious client can do this at will.
 *
 * The rollback API turns the crash into a rejected request: before each request the server
 * takes a checkpoint (tsetjmp), the SIGSEGV handler rolls back to it (tlongjmp(0)), and the
 * server, back before the request with the store intact, records the line as bad in persist()
 * memory, answers "ERR rejected" and goes on serving every client; the same line later is
 * rejected without being run. With --retry a crashing request is run again (as if the crash
 * could be transient) until the crash-loop report says it keeps crashing the same state with
 * the same signal (3 times): the crash-loop handler then marks it bad.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ckpt/rollback.h>

#define MAX_CLIENTS 64
#define MAX_LINE 4096
#define MAX_BAD 1024
#define STORE 512
#define CRASH_LOOP 3

struct entry {
  char key[32];
  long value;
  int used;
};

/* Server state. The session comes first: an over-long HELLO runs from its name over `greeted`
 * into the store. */
static struct {
  struct {
    char name[32];
    long* greeted;
  } session;
  struct entry store[STORE];
  long greetings;
} db;

struct client {
  int fd;
  size_t len;
  char buf[MAX_LINE];
};
static struct client clients[MAX_CLIENTS];

/* Kept across rollbacks: what was learned from them. */
static struct {
  long served;
  long rejected;
  int nbad;
  uint64_t bad[MAX_BAD];
  int crash_loops;
} learned;

static int retry_mode;

static uint64_t hash_line(const char* s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; ++s) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int is_bad(uint64_t h) {
  for (int i = 0; i < learned.nbad; ++i)
    if (learned.bad[i] == h) return 1;
  return 0;
}

static void add_bad(uint64_t h) {
  if (!is_bad(h) && learned.nbad < MAX_BAD) learned.bad[learned.nbad++] = h;
}

static void reply(int fd, const char* text) {
  size_t n = strlen(text);
  if (write(fd, text, n) != (ssize_t)n) perror("write");
}

static void on_crash(int sig) {
  (void)sig;
  tlongjmp(0);
}

static uint64_t crashing_line;

/* The crash-loop report: this request crashed the same state with the same signal
 * CRASH_LOOP times in a row; it is no transient fault. */
static void on_crash_loop(int state, int sig, int count, void* arg) {
  (void)arg;
  printf("crash loop: state %d signal %d count %d\n", state, sig, count);
  fflush(stdout);
  add_bad(crashing_line);
  learned.crash_loops++;
}

static struct entry* find(const char* key, int create) {
  unsigned h = (unsigned)(hash_line(key) % STORE);
  for (unsigned i = 0; i < STORE; ++i) {
    struct entry* e = &db.store[(h + i) % STORE];
    if (e->used && strcmp(e->key, key) == 0) return e;
    if (!e->used) {
      if (!create || strlen(key) >= sizeof e->key) return NULL;
      e->used = 1;
      strcpy(e->key, key);
      e->value = 0;
      return e;
    }
  }
  return NULL;
}

static void serve(struct client* c, char* line, char* out, size_t cap) {
  char* cmd = strtok(line, " ");
  char* a = strtok(NULL, " ");
  char* b = strtok(NULL, " ");
  if (!cmd) {
    snprintf(out, cap, "ERR empty\n");
  } else if (strcmp(cmd, "SET") == 0 && a && b) {
    struct entry* e = find(a, 1);
    if (e) e->value = atol(b);
    snprintf(out, cap, e ? "OK\n" : "ERR full\n");
  } else if (strcmp(cmd, "GET") == 0 && a) {
    struct entry* e = find(a, 0);
    if (e)
      snprintf(out, cap, "VALUE %ld\n", e->value);
    else
      snprintf(out, cap, "NONE\n");
  } else if (strcmp(cmd, "ADD") == 0 && a && b) {
    struct entry* e = find(a, 1);
    if (e) e->value += atol(b);
    snprintf(out, cap, e ? "VALUE %ld\n" : "ERR full\n", e ? e->value : 0);
  } else if (strcmp(cmd, "HELLO") == 0 && a) {
    db.session.greeted = &db.greetings;
    strcpy(db.session.name, a); /* the bug: no length check */
    ++*db.session.greeted;
    snprintf(out, cap, "HELLO %.32s (%ld)\n", db.session.name, db.greetings);
  } else if (strcmp(cmd, "STATS") == 0) {
    snprintf(out, cap,
             "STATS served=%ld rejected=%ld recoveries=%d bad=%d crash_loops=%d checkpoints=%d "
             "pid=%d\n",
             learned.served, learned.rejected, chkpt_status(CKPT_NUMRECOVERIES), learned.nbad,
             learned.crash_loops, chkpt_status(CKPT_NUMCHKPTS), (int)getpid());
  } else if (strcmp(cmd, "QUIT") == 0) {
    close(c->fd);
    c->fd = -1;
    out[0] = '\0';
  } else {
    snprintf(out, cap, "ERR unknown request\n");
  }
}

/* One request, under a checkpoint: if it crashes us, we are back here with the request
 * unserved, and decide what to do with it. */
static void handle(struct client* c, char* line) {
  char out[256];
  uint64_t h = hash_line(line);
  if (is_bad(h)) {
    learned.rejected++;
    reply(c->fd, "ERR rejected\n");
    return;
  }
  crashing_line = h;
  if (tsetjmp() < 0) perror("tsetjmp");
  if (chkpt_status(CKPT_ROLLEDBACK)) {
    /* The request crashed the server. Without --retry it is bad at once; with it, it is run
     * again until the crash-loop handler has marked it bad. */
    if (!retry_mode) add_bad(h);
    if (is_bad(h)) {
      learned.rejected++;
      reply(c->fd, "ERR rejected\n");
      return;
    }
  }
  serve(c, line, out, sizeof out);
  learned.served++;
  if (c->fd >= 0 && out[0]) reply(c->fd, out);
}

static void read_client(struct client* c) {
  ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1);
  if (n <= 0) {
    close(c->fd);
    c->fd = -1;
    return;
  }
  c->len += (size_t)n;
  char* nl;
  while (c->fd >= 0 && (nl = memchr(c->buf, '\n', c->len)) != NULL) {
    size_t used = (size_t)(nl - c->buf) + 1;
    char line[MAX_LINE];
    memcpy(line, c->buf, used - 1);
    line[used - 1] = '\0';
    if (used > 1 && line[used - 2] == '\r') line[used - 2] = '\0';
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    handle(c, line);
  }
  if (c->fd >= 0 && c->len == sizeof c->buf - 1) {
    reply(c->fd, "ERR line too long\n");
    c->len = 0;
  }
}

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  if (fd < 0 || bind(fd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(fd, 64) < 0 ||
      getsockname(fd, (struct sockaddr*)&addr, &alen) < 0) {
    perror("listen");
    exit(1);
  }
  printf("listening %d\n", ntohs(addr.sin_port));
  fflush(stdout);
  return fd;
}

static void accept_client(int lfd) {
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return;
  for (int i = 0; i < MAX_CLIENTS; ++i) {
    if (clients[i].fd < 0) {
      clients[i].fd = fd;
      clients[i].len = 0;
      return;
    }
  }
  reply(fd, "ERR busy\n");
  close(fd);
}

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--retry") == 0) {
      retry_mode = 1;
    } else {
      fprintf(stderr, "usage: %s [--port N] [--retry]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  if (persist((char*)&learned, sizeof learned) < 0 ||
      ckpt_set_crashloop_handler(on_crash_loop, CRASH_LOOP, NULL) < 0) {
    fprintf(stderr, "rollback API: %s\n", ckpt_rollback_error());
    return 1;
  }
  for (int i = 0; i < MAX_CLIENTS; ++i) clients[i].fd = -1;
  int lfd = listen_on(port);
  for (;;) {
    struct pollfd p[MAX_CLIENTS + 1];
    p[0].fd = lfd;
    p[0].events = POLLIN;
    for (int i = 0; i < MAX_CLIENTS; ++i) {
      p[i + 1].fd = clients[i].fd;
      p[i + 1].events = POLLIN;
    }
    if (poll(p, MAX_CLIENTS + 1, -1) < 0 && errno != EINTR) {
      perror("poll");
      return 1;
    }
    if (p[0].revents & POLLIN) accept_client(lfd);
    for (int i = 0; i < MAX_CLIENTS; ++i)
      if (clients[i].fd >= 0 && p[i + 1].revents) read_client(&clients[i]);
  }
}
