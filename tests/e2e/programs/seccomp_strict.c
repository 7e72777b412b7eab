// A thread in strict seccomp mode, blocked in read() of a pipe, stays in strict mode across
// dump and restore: it wakes up on the byte the main thread sends after restore, answers
// through write() and leaves with exit, the only calls strict mode allows.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

static int to_thread[2], from_thread[2];
static volatile pid_t strict_tid;

static void* strict_worker(void* arg) {
  (void)arg;
  strict_tid = (pid_t)syscall(SYS_gettid);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) syscall(SYS_exit, 1);
  char c;
  if (syscall(SYS_read, to_thread[0], &c, 1) == 1) {
    c = (char)(c + 1);
    syscall(SYS_write, from_thread[1], &c, 1);
  }
  syscall(SYS_exit, 0);
  return NULL;
}

static int seccomp_mode(pid_t tid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char* p = strstr(buf, "\nSeccomp:");
  return p ? atoi(p + 9) : -1;
}

int main(void) {
  e2e_setup();
  E2E_SYS(pipe(to_thread));
  E2E_SYS(pipe(from_thread));
  pthread_t t;
  E2E_SYS(-pthread_create(&t, NULL, strict_worker, NULL));
  while (!strict_tid || seccomp_mode(strict_tid) != 1) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  e2e_ready();
  e2e_wait_go();

  E2E_CHECK(seccomp_mode(strict_tid) == 1, "thread %d has seccomp mode %d, want 1 (strict)",
            strict_tid, seccomp_mode(strict_tid));
  E2E_CHECK(seccomp_mode((pid_t)syscall(SYS_gettid)) == 0, "the main thread got seccomp");
  E2E_SYS(write(to_thread[1], "A", 1));
  char c = 0;
  E2E_CHECK(read(from_thread[0], &c, 1) == 1 && c == 'B', "the strict thread answered '%c'", c);
  E2E_SYS(-pthread_join(t, NULL));
  return e2e_finish();
}
