// The demo's worker: adds 1..N slowly, printing each partial sum, and prints the total at the end.
// It knows nothing about ckpt: `ckpt run` checkpoints it from outside and brings it back after a
// crash with its sum and its loop counter where they were.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 60;
  long step_ms = argc > 2 ? atol(argv[2]) : 100;
  setvbuf(stdout, NULL, _IOLBF, 0);
  long long sum = 0;
  for (long i = 1; i <= n; ++i) {
    sum += i;
    printf("step %ld sum %lld\n", i, sum);
    struct timespec ts = {step_ms / 1000, (step_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  printf("total %lld (expected %lld)\n", sum, (long long)n * (n + 1) / 2);
  return 0;
}
