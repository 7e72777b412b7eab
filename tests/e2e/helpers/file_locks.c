// The file-lock matrix of file_locks_test.cpp: {POSIX, flock, OFD, lease} x {held, waited for} x
// {one process, shared across fork} x {file, deleted file}. Roles:
//   file_locks target KIND held|wait one|fork file|deleted PATH
//       the dumped program (protocol of e2e_prog.h). "held": takes the lock through fd 10 (POSIX
//       and OFD: write lock on bytes 0-99 and read lock on 1000-EOF; with fork the child takes a
//       POSIX read lock on 300-399 of its own, other kinds are shared by the child). "wait": with
//       "one" the lock is held by a `hold` process outside and this process blocks on it; with
//       "fork" this process holds it and its child blocks on it until SIGUSR1 releases it. The
//       waiter prints GOT when it has the lock. A lease holder prints SIGIO on its break signal.
//   file_locks hold KIND PATH
//       a holder outside the dumped processes: locks, prints READY, releases on SIGUSR2.
//   file_locks pipe flock -
//       holds an exclusive flock on the read end (fd 10) of a pipe, which ckpt refuses to save.
//   file_locks table thread|child PATH
//       a file table shared in a way ckpt refuses: "thread", a thread that unshared its own
//       (unshare CLONE_FILES) and holds a POSIX lock on PATH through it; "child", a child made
//       with clone(CLONE_FILES), which shares this process's.
//   file_locks try KIND PATH [fork]
//       tries each lock without waiting and prints what it found, e.g. "main=LOCKED free=FREE".
// PATH is the file, or /proc/PID/fd/10 of a process holding it once deleted.
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "e2e_prog.h"

enum kind { POSIX, FLOCK, OFD, LEASE };
static enum kind kind;
static volatile sig_atomic_t released;

static void on_sigio(int sig) {
  (void)sig;
  static const char msg[] = "SIGIO\n";
  ssize_t ignored = write(1, msg, sizeof msg - 1);
  (void)ignored;
}

static void on_release(int sig) {
  (void)sig;
  released = 1;
}

static void handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sa.sa_flags = SA_RESTART;  // a waiter's blocking call must not see EINTR because of us
  sigemptyset(&sa.sa_mask);
  E2E_SYS(sigaction(sig, &sa, NULL));
}

static enum kind parse_kind(const char* s) {
  if (!strcmp(s, "posix")) return POSIX;
  if (!strcmp(s, "flock")) return FLOCK;
  if (!strcmp(s, "ofd")) return OFD;
  if (!strcmp(s, "lease")) return LEASE;
  e2e_say("FAIL unknown kind %s", s);
  exit(2);
}

// A record lock: POSIX or OFD (F_SETLK/F_SETLKW or F_OFD_SETLK/F_OFD_SETLKW).
static int range_lock(int fd, short type, off_t start, off_t len, int wait) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  int cmd = kind == OFD ? (wait ? F_OFD_SETLKW : F_OFD_SETLK) : (wait ? F_SETLKW : F_SETLK);
  return fcntl(fd, cmd, &fl);
}

// The main lock of each kind (exclusive), waiting for it or not.
static int take_main(int fd, int wait) {
  switch (kind) {
    case FLOCK:
      return flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
    case LEASE:
      return fcntl(fd, F_SETLEASE, F_WRLCK);
    default:
      return range_lock(fd, F_WRLCK, 0, 100, wait);
  }
}

static int release_main(int fd) {
  switch (kind) {
    case FLOCK:
      return flock(fd, LOCK_UN);
    case LEASE:
      return fcntl(fd, F_SETLEASE, F_UNLCK);
    default:
      return range_lock(fd, F_UNLCK, 0, 100, 0);
  }
}

static int open_at_10(const char* path) {
  int fd = open(path, O_RDWR);
  E2E_SYS(fd);
  if (fd != 10) {
    E2E_SYS(dup2(fd, 10));
    close(fd);
  }
  return 10;
}

// Waits for the lock the way a program would: blocked in the call (a lease: in open()).
static void wait_for_lock(const char* path) {
  int fd = -1, rc;
  if (kind == LEASE) {
    rc = fd = open(path, O_RDONLY);
  } else {
    fd = open(path, O_RDWR);
    E2E_SYS(fd);
    rc = take_main(fd, 1);
  }
  if (rc < 0) {
    e2e_say("FAIL waiting for the lock: %s", strerror(errno));
    exit(1);
  }
  e2e_say("GOT");
}

static int child_main(int shared, int wait, const char* path) {
  if (wait) {
    wait_for_lock(path);
  } else if (kind == POSIX) {
    E2E_SYS(range_lock(shared, F_RDLCK, 300, 100, 0));
  }
  e2e_sleep_until_go();
  return e2e_finish();
}

static int target(int argc, char** argv) {
  if (argc < 7) return 2;
  int wait = !strcmp(argv[3], "wait"), fork_ = !strcmp(argv[4], "fork");
  int deleted = !strcmp(argv[5], "deleted");
  const char* path = argv[6];
  e2e_setup();
  handle(SIGIO, on_sigio);
  handle(SIGUSR1, on_release);
  if (wait && !fork_) {  // the lock is held outside: just wait for it
    e2e_ready();
    wait_for_lock(path);
    e2e_sleep_until_go();
    return e2e_finish();
  }
  int fd = open_at_10(path);
  if (deleted) E2E_SYS(unlink(path));
  E2E_SYS(take_main(fd, 0));
  if ((kind == POSIX || kind == OFD) && !wait) E2E_SYS(range_lock(fd, F_RDLCK, 1000, 0, 0));
  pid_t child = 0;
  if (fork_) {
    char own[64];
    snprintf(own, sizeof own, "/proc/%d/fd/10", (int)getpid());
    E2E_SYS(child = fork());
    if (child == 0) _exit(child_main(fd, wait, own));
  }
  sigset_t both, old;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  sigprocmask(SIG_BLOCK, &both, &old);
  e2e_ready();
  while (!e2e_go && !released) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (released) E2E_SYS(release_main(fd));
  e2e_wait_go();
  if (child > 0) {
    int st = 0;
    kill(child, SIGUSR2);
    E2E_CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the child ended with status 0x%x", st);
  }
  return e2e_finish();
}

static int hold(const char* path) {
  handle(SIGIO, on_sigio);
  handle(SIGUSR2, on_release);
  sigset_t usr2, old;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, &old);
  int fd = open_at_10(path);
  E2E_SYS(take_main(fd, 1));
  e2e_say("READY");
  while (!released) sigsuspend(&old);
  E2E_SYS(release_main(fd));
  e2e_say("RELEASED");
  return 0;
}

static const char* try_range(int fd, short type, off_t start, off_t len) {
  if (range_lock(fd, type, start, len, 0) == 0) {
    range_lock(fd, F_UNLCK, start, len, 0);
    return "FREE";
  }
  return errno == EAGAIN || errno == EACCES ? "LOCKED" : strerror(errno);
}

static int try_locks(const char* path) {
  if (kind == LEASE) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    e2e_say("main=%s", fd >= 0 ? "FREE" : errno == EWOULDBLOCK ? "LOCKED" : strerror(errno));
    return 0;
  }
  int fd = open(path, O_RDWR);
  E2E_SYS(fd);
  if (kind == FLOCK) {
    int rc = flock(fd, LOCK_EX | LOCK_NB);
    e2e_say("main=%s", rc == 0 ? "FREE" : errno == EWOULDBLOCK ? "LOCKED" : strerror(errno));
    return 0;
  }
  const char* main_ = try_range(fd, F_WRLCK, 0, 100);
  const char* tail = try_range(fd, F_WRLCK, 2000, 100);
  const char* child = try_range(fd, F_WRLCK, 300, 100);
  const char* free_ = try_range(fd, F_WRLCK, 500, 100);
  e2e_say("main=%s tail=%s child=%s free=%s", main_, tail, child, free_);
  return 0;
}

static int pipe_lock(void) {
  int p[2];
  e2e_setup();
  E2E_SYS(pipe(p));
  E2E_SYS(dup2(p[0], 10));
  close(p[0]);
  E2E_SYS(flock(10, LOCK_EX | LOCK_NB));
  e2e_ready();
  e2e_sleep_until_go();
  E2E_CHECK(flock(10, LOCK_UN) == 0, "flock(LOCK_UN) on the pipe: %s", strerror(errno));
  return e2e_finish();
}

static volatile int thread_locked;

static void* own_table_thread(void* path) {
  if (unshare(CLONE_FILES) < 0) return NULL;
  int fd = open(path, O_RDWR);
  if (fd >= 0 && range_lock(fd, F_WRLCK, 0, 100, 0) == 0) thread_locked = 1;
  for (;;) pause();
  return NULL;
}

static int sleeper(void* arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}

static int table(const char* how, const char* path) {
  static char stack[64 * 1024];
  e2e_setup();
  pid_t child = 0;
  if (!strcmp(how, "thread")) {
    pthread_t t;
    E2E_CHECK(pthread_create(&t, NULL, own_table_thread, (void*)path) == 0, "pthread_create");
    for (int i = 0; i < 500 && !thread_locked; ++i) usleep(10000);
    E2E_CHECK(thread_locked, "the thread did not take its lock");
  } else {
    E2E_SYS(child = clone(sleeper, stack + sizeof stack, CLONE_FILES | SIGCHLD, NULL));
  }
  e2e_ready();
  e2e_sleep_until_go();
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
  }
  return e2e_finish();
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  if (!strcmp(argv[1], "table")) return table(argv[2], argv[3]);
  kind = parse_kind(argv[2]);
  if (!strcmp(argv[1], "target")) return target(argc, argv);
  if (!strcmp(argv[1], "hold")) return hold(argv[3]);
  if (!strcmp(argv[1], "try")) return try_locks(argv[3]);
  if (!strcmp(argv[1], "pipe")) return pipe_lock();
  return 2;
}
