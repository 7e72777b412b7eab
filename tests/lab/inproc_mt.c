/* A multi-threaded C program that checkpoints itself with ckpt_dump() (tests/lab's
 * InprocessApi test): `inproc-mt IMAGES RESULT [--kill]`
 * (--kill: leave_running off, so a successful dump kills the process). Two threads count while the
 * main thread dumps; after ckpt_dump() returns (0 here, 1 in a restored copy) it checks that both
 * threads still run, appends "dump returned R, N threads" to RESULT and exits 0 (3 if a thread
 * stopped counting, 4 if the dump failed). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/ckpt.h"

static atomic_int stop;
static atomic_long counters[2];

static void* count(void* arg) {
  atomic_long* c = arg;
  const struct timespec ms = {0, 1000000};
  while (!atomic_load(&stop)) {
    atomic_fetch_add(c, 1);
    nanosleep(&ms, NULL);
  }
  return NULL;
}

static int threads_now(void) {
  DIR* d = opendir("/proc/self/task");
  int n = 0;
  if (!d) return -1;
  for (struct dirent* e; (e = readdir(d));)
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

int main(int argc, char** argv) {
  pthread_t t[2];
  const struct timespec settle = {0, 50000000};
  long before[2];
  int i, r;
  char line[64];
  int fd;
  if (argc != 3 && !(argc == 4 && strcmp(argv[3], "--kill") == 0)) return 2;
  ckpt_init_opts();
  if (ckpt_set_images_dir(argv[1]) < 0) return 2;
  ckpt_set_leave_running(argc == 3);
  for (i = 0; i < 2; ++i) pthread_create(&t[i], NULL, count, &counters[i]);
  nanosleep(&settle, NULL);
  r = ckpt_dump();
  if (r < 0) {
    fprintf(stderr, "ckpt_dump: %d %s\n", r, ckpt_last_error());
    return 4;
  }
  for (i = 0; i < 2; ++i) before[i] = atomic_load(&counters[i]);
  nanosleep(&settle, NULL);
  /* Opened only now: a file open at the dump must keep its size for the restore. */
  fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  snprintf(line, sizeof line, "dump returned %d, %d threads\n", r, threads_now());
  if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line)) return 5;
  close(fd);
  for (i = 0; i < 2; ++i)
    if (atomic_load(&counters[i]) == before[i]) return 3;
  atomic_store(&stop, 1);
  for (i = 0; i < 2; ++i) pthread_join(t[i], NULL);
  return 0;
}
