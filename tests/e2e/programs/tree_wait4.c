// A process tree whose parent is blocked in wait4() at dump time. The parent's main thread waits
// for a child that sleeps 2.5 s in total and then exits 7 once told to (a byte on a pipe, sent
// only after the runner's SIGUSR2, i.e. after the restore): so the child was still running and
// the parent still in wait4 when the dump happened, whatever the dump's timing, and the program
// checks both (wait4 returned after the go, the child alive and the main thread back in wait4
// after the restore). wait4 must return that child with status 7 (never EINTR, never early), a
// second child blocked in read() on a pipe from the parent must still be running (WNOHANG) and
// answer through its pipe, and each child's getpid()/getppid() must be what they were.
//
// SIGUSR2 is blocked in the main thread: the runner's signal goes to a second thread, so nothing
// but the dump/restore could interrupt wait4.
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "e2e_prog.h"

#define SLEEPER_SECONDS 2.5
#define SLEEPER_OK 7
#define SLEEPER_BAD_PARENT 8

#define SLEEPER_NO_GO 9

static pid_t parent_pid;
static volatile int main_tid;
static volatile int waiting;
static pid_t slow;
static int release_fd = -1;          // the parent's end of the sleeper's pipe
static volatile double go_at;        // when the go thread released the sleeper
static volatile int in_wait4_at_go;  // the main thread's system call then
static volatile int slow_alive_at_go;

// Sleeps until SLEEPER_SECONDS have passed since `start` (whatever interrupts nanosleep), waits
// for the byte that releases it, then exits 7 when its parent and its own pid are still what
// they were at fork.
static void sleeper(double start, pid_t my_pid, int release) {
  for (;;) {
    double left = start + SLEEPER_SECONDS - e2e_now();
    if (left <= 0) break;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
  }
  char c = 0;
  ssize_t n;
  do n = read(release, &c, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1 || c != 'r') _exit(SLEEPER_NO_GO);
  _exit(getppid() == parent_pid && getpid() == my_pid ? SLEEPER_OK : SLEEPER_BAD_PARENT);
}

// 1 when `pid` exists and is not a zombie.
static int running(pid_t pid) {
  char path[64], buf[512] = "";
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
  fclose(f);
  const char* paren = strrchr(buf, ')');
  return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

// Blocked in read() on `ctl` at dump time; afterwards reports getpid() and getppid() on `report`.
static void reader(int ctl, int report) {
  char c;
  ssize_t n = read(ctl, &c, 1);
  pid_t ids[2] = {getpid(), getppid()};
  if (n != 1 || c != 'g') ids[0] = -1;
  _exit(write(report, ids, sizeof ids) == (ssize_t)sizeof ids ? 0 : 3);
}

// The runner's SIGUSR2 lands here. READY only once the main thread sits in wait4; after the go
// (after the restore) it notes where the main thread and the sleeper are, then releases it.
static void* go_thread(void* arg) {
  (void)arg;
  while (!waiting) usleep(1000);
  while (e2e_syscall_of(main_tid) != SYS_wait4) usleep(1000);
  e2e_ready();
  e2e_wait_go();
  // Let go by the restorer, the main thread goes back into wait4 once it is scheduled, which on
  // a busy machine can come after the go: it has 2 s to be seen there ("running" reads as 0).
  for (int i = 0; i < 2000 && e2e_syscall_of(main_tid) != SYS_wait4; ++i) usleep(1000);
  in_wait4_at_go = e2e_syscall_of(main_tid) == SYS_wait4;
  slow_alive_at_go = running(slow);
  go_at = e2e_now();
  if (write(release_fd, "r", 1) != 1) e2e_say("FAIL release the sleeper: %s", strerror(errno));
  return NULL;
}

int main(void) {
  e2e_setup();
  parent_pid = getpid();
  main_tid = (int)syscall(SYS_gettid);
  int ctl[2], report[2], release[2];
  E2E_SYS(pipe(ctl));
  E2E_SYS(pipe(report));
  E2E_SYS(pipe(release));
  double start = e2e_now();
  slow = fork();
  E2E_SYS(slow);
  if (slow == 0) {
    close(release[1]);
    sleeper(start, getpid(), release[0]);
  }
  close(release[0]);
  release_fd = release[1];
  pid_t rd = fork();
  E2E_SYS(rd);
  if (rd == 0) {
    close(ctl[1]);
    close(report[0]);
    reader(ctl[0], report[1]);
  }
  close(ctl[0]);
  close(report[1]);

  pthread_t t;
  e2e_go_thread(&t, go_thread);

  waiting = 1;
  int status = 0;
  struct rusage ru;
  pid_t got = wait4(slow, &status, 0, &ru);
  int wait_errno = errno;
  double returned_at = e2e_now();
  pthread_join(t, NULL);  // the runner's SIGUSR2 came

  E2E_CHECK(got == slow, "wait4 returned %d (%s), want %d", (int)got,
            got < 0 ? strerror(wait_errno) : "no error", (int)slow);
  E2E_CHECK(got != slow || (WIFEXITED(status) && WEXITSTATUS(status) == SLEEPER_OK),
            "the sleeping child ended with status 0x%x, want exit %d (8: wrong parent/pid)", status,
            SLEEPER_OK);
  E2E_CHECK(returned_at - start >= SLEEPER_SECONDS - 0.01,
            "wait4 returned %.3f s after the fork, before the child's %.1f s were up",
            returned_at - start, SLEEPER_SECONDS);
  // The child exits only once released after the go: had wait4 returned before, the dump did
  // not catch the parent in wait4 with the child running.
  E2E_CHECK(go_at > 0 && returned_at >= go_at,
            "wait4 returned %.3f s before the sleeper was released", go_at - returned_at);
  E2E_CHECK(in_wait4_at_go, "after the restore the main thread was not in wait4 (syscall %ld)",
            e2e_syscall_of(main_tid));
  E2E_CHECK(slow_alive_at_go, "after the restore the sleeping child %d was not running", (int)slow);

  int st2 = 0;
  pid_t r = waitpid(rd, &st2, WNOHANG);
  E2E_CHECK(r == 0, "waitpid(WNOHANG) of the reading child returned %d (status 0x%x), want 0",
            (int)r, st2);
  E2E_CHECK(write(ctl[1], "g", 1) == 1, "write to the reading child: %s", strerror(errno));
  pid_t ids[2] = {0, 0};
  ssize_t n = read(report[0], ids, sizeof ids);
  E2E_CHECK(n == (ssize_t)sizeof ids, "report from the reading child: %zd bytes", n);
  E2E_CHECK(ids[0] == rd, "the reading child says it is pid %d, want %d (-1: bad ctl byte)",
            (int)ids[0], (int)rd);
  E2E_CHECK(ids[1] == parent_pid, "the reading child's parent is %d, want %d", (int)ids[1],
            (int)parent_pid);
  E2E_CHECK(waitpid(rd, &st2, 0) == rd && WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
            "the reading child ended with status 0x%x", st2);
  return e2e_finish();
}
