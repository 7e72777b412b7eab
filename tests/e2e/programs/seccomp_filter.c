// Seccomp filters survive: the main thread has two (one makes getppid fail with EPERM, one kills
// the process on calls ckpt itself injects, such as brk, mmap or prctl), a thread created between
// the two has inherited the first only, a thread created before has none. After restore the
// filters still act (getppid fails; a forked child dies of SIGSYS on brk), each thread has as
// many filters as before, and no_new_privs is still set.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "e2e_prog.h"

static volatile int stop;
static pid_t tids[2];

static void* idle(void* arg) {
  tids[(long)arg] = (pid_t)syscall(SYS_gettid);
  while (!stop) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static void install(struct sock_filter* f, unsigned short len, unsigned flags) {
  struct sock_fprog prog = {len, f};
  E2E_SYS(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog));
}

static void deny_getppid(void) {
  struct sock_filter f[] = {
      LOAD_NR,
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
      RET(SECCOMP_RET_ERRNO | EPERM),
      RET(SECCOMP_RET_ALLOW),
  };
  install(f, sizeof f / sizeof f[0], SECCOMP_FILTER_FLAG_LOG);
}

// Kills the process on any of the calls ckpt makes inside a process while dumping it.
static void kill_on_injected_calls(void) {
  static const int nrs[] = {SYS_brk,
                            SYS_mmap,
                            SYS_munmap,
                            SYS_mprotect,
                            SYS_getitimer,
                            SYS_setitimer,
                            SYS_rt_sigaction,
                            SYS_sigaltstack,
                            SYS_prctl,
                            SYS_set_tid_address,
                            SYS_set_robust_list,
                            SYS_rseq,
                            SYS_arch_prctl,
                            SYS_madvise};
  enum { N = sizeof nrs / sizeof nrs[0] };
  struct sock_filter f[2 * N + 2];
  int k = 0;
  f[k++] = (struct sock_filter)LOAD_NR;
  for (int i = 0; i < N; ++i) {
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], 0, 1);
    f[k++] = (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS);
  }
  f[k++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
  install(f, (unsigned short)k, 0);
}

static int status_int(const char* path, const char* key) {
  char buf[4096];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char* p = strstr(buf, key);
  return p ? atoi(p + strlen(key)) : -1;
}

static void check_thread(pid_t tid, int mode, int filters) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  int m = status_int(path, "\nSeccomp:"), n = status_int(path, "\nSeccomp_filters:");
  E2E_CHECK(m == mode && n == filters, "thread %d: Seccomp %d with %d filters, want %d with %d",
            tid, m, n, mode, filters);
}

int main(void) {
  e2e_setup();
  pthread_t before, between;
  E2E_SYS(-pthread_create(&before, NULL, idle, (void*)0));
  E2E_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  deny_getppid();
  E2E_SYS(-pthread_create(&between, NULL, idle, (void*)1));
  while (!tids[0] || !tids[1]) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  kill_on_injected_calls();
  e2e_ready();
  e2e_wait_go();

  pid_t me = (pid_t)syscall(SYS_gettid);
  check_thread(me, 2, 2);
  check_thread(tids[0], 0, 0);
  check_thread(tids[1], 2, 1);
  errno = 0;
  long r = syscall(SYS_getppid);
  E2E_CHECK(r == -1 && errno == EPERM, "getppid returned %ld (errno %d), want EPERM", r, errno);
  E2E_CHECK(status_int("/proc/self/status", "\nNoNewPrivs:") == 1, "no_new_privs lost");
  pid_t child = (pid_t)syscall(SYS_fork);  // glibc's fork() may call what the filter kills
  if (child == 0) {
    syscall(SYS_brk, 0);
    syscall(SYS_exit_group, 0);
  }
  int st = 0;
  E2E_SYS(child);
  E2E_SYS(waitpid(child, &st, 0));
  E2E_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
            "a child calling brk was not killed by the filter (status %#x)", st);
  stop = 1;
  return e2e_finish();
}
