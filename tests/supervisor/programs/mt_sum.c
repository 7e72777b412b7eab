// A multi-threaded program that sums 1..N slowly: T threads each add every T-th number, then
// main prints the total. Its state lives in thread stacks and a shared counter.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long n_total;
static int n_threads;
static atomic_long sum;

static void* worker(void* arg) {
  long id = (long)arg;
  struct timespec pause = {0, 2 * 1000 * 1000};
  for (long i = id + 1; i <= n_total; i += n_threads) {
    atomic_fetch_add(&sum, i);
    nanosleep(&pause, NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: mt_sum N THREADS\n");
    return 2;
  }
  n_total = atol(argv[1]);
  n_threads = atoi(argv[2]);
  pthread_t t[64];
  if (n_threads < 1 || n_threads > 64) return 2;
  for (long i = 0; i < n_threads; ++i) pthread_create(&t[i], NULL, worker, (void*)i);
  for (int i = 0; i < n_threads; ++i) pthread_join(t[i], NULL);
  printf("%ld\n", atomic_load(&sum));
  return 0;
}
