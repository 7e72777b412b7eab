// The counter of counter.c in a child process, while the parent's main thread waits for it in
// wait4(): dumped and restored as a tree, the count must go on with no gap and no repeat. On
// SIGUSR2 (to the parent) the parent tells the child to stop; the child exits 7 when its parent
// and pid are still what they were, and the parent prints PASS when wait4 brought exactly that.
#include <sys/wait.h>

#include "e2e_prog.h"

#define CHILD_OK 7

static pid_t child;

static void* go_thread(void* arg) {
  (void)arg;
  e2e_wait_go();
  kill(child, SIGUSR2);
  return NULL;
}

static void count(pid_t parent) {
  pid_t me = getpid();
  e2e_ready();
  for (unsigned long i = 0; !e2e_go; ++i) {
    e2e_say("%lu", i);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  _exit(getppid() == parent && getpid() == me ? CHILD_OK : CHILD_OK + 1);
}

int main(void) {
  e2e_setup();
  pid_t parent = getpid();
  child = fork();
  E2E_SYS(child);
  if (child == 0) count(parent);
  // Only the go thread takes SIGUSR2: nothing but the dump may interrupt wait4.
  pthread_t t;
  e2e_go_thread(&t, go_thread);
  int st = 0;
  pid_t got = wait4(child, &st, 0, NULL);
  E2E_CHECK(got == child, "wait4 returned %d: %s", (int)got, got < 0 ? strerror(errno) : "");
  E2E_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == CHILD_OK,
            "the counting child ended with status 0x%x, want exit %d", st, CHILD_OK);
  pthread_join(t, NULL);
  return e2e_finish();
}
