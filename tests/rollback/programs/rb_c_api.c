/* The C header in strict C11 (-pedantic-errors), with the paper's names: tsetjmp, tlongjmp,
 * persist, cache with IN/OUT, chkpt_status and its types. Prints PASS and exits 0. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/rollback.h"

#define CHECK(c)                                                                       \
  do {                                                                                 \
    if (!(c)) {                                                                        \
      fprintf(stderr, "FAIL line %d: %s (%s)\n", __LINE__, #c, ckpt_rollback_error()); \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

static int iterations; /* persistent */
static int scratch = 10;
static struct {
  int checked;
  char text[16];
} saved = {1, "sane"};

static volatile int* volatile nowhere; /* NULL, as the compiler cannot prove */

static void on_segv(int sig) {
  (void)sig;
  tlongjmp(0);
  _exit(3);
}

int main(void) {
  int d;
  CHECK(persist((char*)&iterations, sizeof iterations) == 0);
  CHECK(cache(IN, (char*)&saved, sizeof saved) == 0);
  CHECK(signal(SIGSEGV, on_segv) != SIG_ERR);
  d = tsetjmp();
  CHECK(d == 1);
  if (iterations++ < 2) {
    scratch = 99;
    strcpy(saved.text, "bad");
    if (iterations == 1) *nowhere = 1; /* SIGSEGV: back via tlongjmp(0) */
    tlongjmp(1);
  }
  CHECK(iterations == 3 && scratch == 10 && strcmp(saved.text, "sane") == 0);
  CHECK(chkpt_status(CHKPT_RECOVERED) == 1 && chkpt_status(CKPT_RECOVERED) == 1);
  CHECK(chkpt_status(CKPT_FROM_STATE) == 1 && chkpt_status(CKPT_TO_STATE) == 1);
  CHECK(chkpt_status(CKPT_SIGTYPE) == 0); /* the last one was not from a handler */
  CHECK(chkpt_status(CKPT_NUMCHKPTS) == 1 && chkpt_status(CKPT_NUMRECOVERIES) == 2);
  CHECK(chkpt_status(CKPT_LOOPCOUNT) == 1); /* SIGSEGV, then no signal: not a loop */
  strcpy(saved.text, "oops");
  CHECK(cache(OUT, (char*)&saved, sizeof saved) == 0 && strcmp(saved.text, "sane") == 0);
  errno = 0;
  CHECK(tlongjmp(5) == -1 && errno == EINVAL);
  printf("PASS\n");
  return 0;
}
