// Prints a counter every 100 ms to stdout; used to check that a restored process carries on.
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  for (unsigned long i = 0;; ++i) {
    printf("%lu\n", i);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}
