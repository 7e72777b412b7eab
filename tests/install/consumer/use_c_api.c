/* Built against the installed libckpt with pkg-config or find_package(ckpt): saves a counter
 * with the application-state API, changes it, restores it and checks it came back. */
#include <stdio.h>
#include <stdlib.h>

#include <ckpt/ckpt.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ckpt_state_options opts;
  ckpt_state_options_init(&opts);
  opts.dir = argv[1];
  ckpt_state* st = ckpt_state_open(&opts);
  if (!st) return 1;
  long counter = 41;
  if (ckpt_state_add_range(st, "counter", &counter, sizeof counter) != 0) return 1;
  if (ckpt_state_checkpoint(st) != 0) {
    fprintf(stderr, "checkpoint: %s\n", ckpt_state_error(st));
    return 1;
  }
  counter = 0;
  if (ckpt_state_restore(st) != 1 || counter != 41) {
    fprintf(stderr, "restore: %s (counter %ld)\n", ckpt_state_error(st), counter);
    return 1;
  }
  ckpt_state_close(st);
  puts("c api ok");
  return 0;
}
