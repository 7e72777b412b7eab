/* The paper's first sample ("A Framework for Program Recovery Using Checkpointing in UNIX",
 * section 3), made runnable: the #include below is added, main() gets its return type, the
 * "operation that causes segmentation fault" and the continuation are written out. Answer 'y'
 * and the program corrupts itself; the SIGSEGV handler rolls it back to the checkpoint and it
 * asks again. Run it on a terminal (stdio buffers are memory too: with pipes, the question sits
 * in stdout's buffer and goes back with it).
 *
 *   $ rollback-paper_segv
 *   do you want to corrupt the program
 *   y
 *   do you want to corrupt the program
 *   n
 *   continuing after 1 recoveries
 */
#include <signal.h>
#include <stdio.h>

#include <ckpt/rollback.h>

void my_handler(int signum) {
  if (signum == SIGSEGV)
    tlongjmp(0);
  else
    tlongjmp(1);
}

int main(void) {
  signal(SIGSEGV, my_handler);
  if (tsetjmp() < 0) perror("tsetjmp");
  printf("do you want to corrupt the program\n");
  if (getchar() == 'y') {
    /* perform an operation that causes segmentation fault */
    volatile int* volatile p = NULL;
    *p = 1;
  }
  /* continue program execution */
  printf("continuing after %d recoveries\n", chkpt_status(CKPT_NUMRECOVERIES));
  return 0;
}
