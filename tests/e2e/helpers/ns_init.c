// The init of a PID namespace of its own (started as `unshare --pid --fork --mount-proc
// ns_init`), with what an init has: a worker child counting in memory it shares with the init,
// and an orphan (its parent exited) that the kernel gave to the init. Checks, after the restore:
// it is PID 1 and /proc is its namespace's, showing exactly its processes; the worker counted on
// from where it was; the orphan is still its child (it reaps its exit code); the session as
// before; a child forked now gets the PID after the last one the namespace gave before the dump
// (not a low one, as a fresh namespace would give) and is reaped.
#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "e2e_prog.h"

static volatile unsigned long* counter;

static pid_t start_worker(void) {
  pid_t pid = fork();
  E2E_SYS(pid);
  if (pid > 0) return pid;
  for (;;) {
    ++*counter;
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

// A child that forks the orphan and exits at once: the orphan's parent becomes the init.
static pid_t start_orphan(void) {
  int p[2];
  E2E_SYS(pipe(p));
  pid_t middle = fork();
  E2E_SYS(middle);
  if (middle == 0) {
    pid_t orphan = fork();
    if (orphan == 0) {
      e2e_setup();
      close(p[0]);
      close(p[1]);
      e2e_sleep_until_go();
      _exit(getppid() == 1 ? 7 : 8);
    }
    (void)!write(p[1], &orphan, sizeof orphan);
    _exit(0);
  }
  close(p[1]);
  pid_t orphan = 0;
  E2E_CHECK(read(p[0], &orphan, sizeof orphan) == sizeof orphan, "no orphan");
  close(p[0]);
  int st = 0;
  E2E_CHECK(waitpid(middle, &st, 0) == middle, "the middle child was not reaped");
  return orphan;
}

static int numeric(const char* s) {
  for (; *s; ++s)
    if (*s < '0' || *s > '9') return 0;
  return 1;
}

// The PIDs /proc lists: every process of the namespace.
static int proc_pids(pid_t* out, int max) {
  DIR* d = opendir("/proc");
  if (!d) return -1;
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL)
    if (numeric(e->d_name) && n < max) out[n++] = atoi(e->d_name);
  closedir(d);
  return n;
}

static int listed(const pid_t* pids, int n, pid_t pid) {
  for (int i = 0; i < n; ++i)
    if (pids[i] == pid) return 1;
  return 0;
}

int main(void) {
  e2e_setup();
  E2E_CHECK(getpid() == 1, "not the init of a PID namespace (pid %d)", getpid());
  counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (counter == MAP_FAILED) return 1;
  pid_t sid = getsid(0);
  pid_t worker = start_worker();
  pid_t orphan = start_orphan();
  // Children that come and go: the namespace's last given PID moves on past them.
  pid_t last_before = 0;
  for (int i = 0; i < 10; ++i) {
    last_before = fork();
    E2E_SYS(last_before);
    if (last_before == 0) _exit(0);
    E2E_CHECK(waitpid(last_before, NULL, 0) == last_before, "a short child was not reaped");
  }
  while (*counter < 5) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  e2e_ready();
  e2e_wait_go();
  unsigned long seen = *counter;
  E2E_CHECK(getpid() == 1, "pid %d after the restore", getpid());
  E2E_CHECK(getsid(0) == sid, "session %d, was %d", getsid(0), sid);
  char self[16] = {0};
  E2E_CHECK(readlink("/proc/self", self, sizeof self - 1) > 0 && atoi(self) == 1,
            "/proc/self is %s: /proc is not the namespace's", self);
  pid_t pids[64];
  int n = proc_pids(pids, 64);
  E2E_CHECK(n == 3 && listed(pids, n, 1) && listed(pids, n, worker) && listed(pids, n, orphan),
            "/proc lists %d processes, not exactly 1, %d and %d", n, worker, orphan);
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, NULL);
  E2E_CHECK(*counter > seen, "the worker does not count on (%lu)", seen);
  E2E_SYS(kill(orphan, SIGUSR2));
  int st = 0;
  E2E_CHECK(waitpid(orphan, &st, 0) == orphan && WIFEXITED(st) && WEXITSTATUS(st) == 7,
            "the orphan is not the init's child any more (status %#x)", st);
  pid_t late = fork();
  E2E_SYS(late);
  if (late == 0) _exit(getpid() == 1 ? 1 : 0);
  E2E_CHECK(late != worker && late != 1, "a new child got pid %d", late);
  E2E_CHECK(late > last_before, "a new child got pid %d, not one after the last given (%d)", late,
            last_before);
  E2E_CHECK(waitpid(late, &st, 0) == late && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "a new child did not end well");
  E2E_SYS(kill(worker, SIGKILL));
  E2E_CHECK(waitpid(worker, &st, 0) == worker, "the worker was not reaped");
  return e2e_finish();
}
