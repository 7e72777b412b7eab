// Several threads in different states: one waiting on a condition variable, one blocked in a raw
// futex wait, two taking turns on a mutex. After restore each thread must keep its TID, name and
// thread-local data, the locks must still work and every thread must be joinable.
#include <linux/futex.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "e2e_prog.h"

#define WORKERS 2

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int phase;
static volatile int futex_word;
static volatile int stop_workers;
static long shared_count;
static pid_t tids[4];
static volatile int started;
static __thread long tls_value;

struct result {
  int tid_ok, name_ok, tls_ok;
  long own_count;
};

static pid_t tid(void) {
  return (pid_t)syscall(SYS_gettid);
}

static void begin(int idx, const char* name) {
  tids[idx] = tid();
  tls_value = 1000 + idx;
  prctl(PR_SET_NAME, name);
  __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
}

static void end(struct result* r, int idx, const char* name) {
  char now[17] = {0};
  prctl(PR_GET_NAME, now);
  r->tid_ok = tid() == tids[idx];
  r->name_ok = strcmp(now, name) == 0;
  r->tls_ok = tls_value == 1000 + idx;
}

static void* cond_waiter(void* arg) {
  struct result* r = arg;
  begin(0, "e2e-cond");
  pthread_mutex_lock(&lock);
  while (phase == 0) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  end(r, 0, "e2e-cond");
  return r;
}

static void* futex_waiter(void* arg) {
  struct result* r = arg;
  begin(1, "e2e-futex");
  while (futex_word == 0) syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  end(r, 1, "e2e-futex");
  return r;
}

static void* mutex_worker(void* arg) {
  struct result* r = arg;
  int idx = r == NULL ? 0 : (int)r->own_count;  // slot passed in own_count
  r->own_count = 0;
  const char* name = idx == 2 ? "e2e-work2" : "e2e-work3";
  begin(idx, name);
  while (!stop_workers) {
    pthread_mutex_lock(&lock);
    ++shared_count;
    pthread_mutex_unlock(&lock);
    ++r->own_count;
    if ((r->own_count & 1023) == 0) sched_yield();
  }
  end(r, idx, name);
  return r;
}

int main(void) {
  e2e_setup();
  // Only the main thread takes the go signal.
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, NULL);
  pthread_t th[4];
  struct result res[4] = {{0}};
  res[2].own_count = 2;
  res[3].own_count = 3;
  pthread_create(&th[0], NULL, cond_waiter, &res[0]);
  pthread_create(&th[1], NULL, futex_waiter, &res[1]);
  pthread_create(&th[2], NULL, mutex_worker, &res[2]);
  pthread_create(&th[3], NULL, mutex_worker, &res[3]);
  pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
  while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 4) sched_yield();
  pid_t main_tid = tid();
  e2e_ready();
  e2e_wait_go();

  E2E_CHECK(tid() == main_tid && main_tid == getpid(), "main thread's tid changed");
  pthread_mutex_lock(&lock);
  phase = 1;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  futex_word = 1;
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  struct timespec run = {0, 100 * 1000 * 1000};
  nanosleep(&run, NULL);
  stop_workers = 1;
  const char* names[4] = {"cond waiter", "futex waiter", "mutex worker 2", "mutex worker 3"};
  for (int i = 0; i < 4; ++i) {
    void* ret = NULL;
    int err = pthread_join(th[i], &ret);
    E2E_CHECK(err == 0 && ret == &res[i], "pthread_join of the %s: %s", names[i], strerror(err));
    E2E_CHECK(res[i].tid_ok, "the %s's tid changed (was %d)", names[i], tids[i]);
    E2E_CHECK(res[i].name_ok, "the %s's name changed", names[i]);
    E2E_CHECK(res[i].tls_ok, "the %s's thread-local value changed", names[i]);
  }
  E2E_CHECK(shared_count == res[2].own_count + res[3].own_count,
            "mutex lost updates: shared %ld, workers %ld + %ld", shared_count, res[2].own_count,
            res[3].own_count);
  return e2e_finish();
}
