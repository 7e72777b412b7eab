#ifndef CKPT_ROLLBACK_H
#define CKPT_ROLLBACK_H
/* User-directed rollback: the API of "A Framework for Program Recovery Using Checkpointing in
 * UNIX" (Prasad and Macy, DragonFlyBSD), on Linux. Usable from C11 and C++.
 *
 * A program marks states it can return to with tsetjmp() and, when it finds itself corrupted
 * (typically in a SIGSEGV handler), goes back to one of them with tlongjmp(): every thread, all
 * of its memory (except the ranges given to persist()), its signal mask and handlers and its file
 * offsets return to what they were at that tsetjmp(), which then returns again. The process keeps
 * its PID; its parent sees nothing; open connections, pipes and child processes stay as they are.
 *
 *     #include <ckpt/rollback.h>
 *
 *     void on_segv(int sig) { tlongjmp(0); }      // back to the newest checkpoint
 *     ...
 *     signal(SIGSEGV, on_segv);
 *     if (tsetjmp() < 0) perror("tsetjmp");
 *     if (chkpt_status(CKPT_ROLLEDBACK)) ...      // we came back here after a crash
 *
 * The paper's names (tsetjmp, tlongjmp, persist, cache, chkpt_status, IN, OUT) are macros over
 * the ckpt_* functions; define CKPT_NO_PAPER_NAMES before including this header to leave them
 * out (and CKPT_NO_IN_OUT to leave out only IN and OUT).
 *
 * Checkpoints live in memory: each one is a copy-on-write fork of the process that sleeps
 * without running any of its code, plus a small record in a helper process that the first call
 * starts (a re-execution of the program itself, which therefore must link libckpt directly).
 * Needs the privileges of the engine (root, or CAP_CHECKPOINT_RESTORE + CAP_SYS_PTRACE).
 * docs/rollback.md explains the design, what is kept and restored, the costs and the limits.
 *
 * All functions may be called from any thread. tlongjmp() and chkpt_status() may be called from
 * a signal handler (they allocate nothing and take no lock the program could hold). On failure
 * they return -1 and set errno; ckpt_rollback_error() then holds a one-line message.
 */
#include <stddef.h>

#include "ckpt/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Takes a checkpoint of the calling process and returns its descriptor: 1, 2, 3, ... in the
 * order they are taken (never reused). After a rollback to it, execution continues as if this
 * call returned again, with the same descriptor (chkpt_status(CKPT_ROLLEDBACK) tells the two
 * returns apart). The calling thread waits while the checkpoint is taken; the other threads are
 * stopped for that time. Returns -1 with errno on failure (EPERM: no right to trace the process;
 * EBUSY: it is traced by someone else; EIO: the helper died; ENOMEM; EOVERFLOW after INT_MAX
 * checkpoints), and the process goes on untouched.
 *
 * Retention: only the newest ckpt_rollback_set_keep() checkpoints (8 by default) and the ones
 * pinned with ckpt_pin() are kept; older ones are dropped as new ones are taken, and their
 * descriptors then give EINVAL. A rollback to checkpoint n drops every checkpoint newer than n
 * (they describe a future that did not happen). */
CKPT_API int ckpt_tsetjmp(void);

/* Rolls the whole process back to checkpoint n (0 = the newest one kept when tlongjmp() is
 * called). Returns only on failure: -1 with errno EINVAL when n is negative or not a kept
 * checkpoint (never taken, dropped by retention, or newer than the state we went back to); EIO
 * if the helper is gone. Works from a signal handler (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, ...),
 * from any thread, and in multi-threaded programs: every thread goes back to where it was at
 * that checkpoint; threads started since end; threads that ended since are recreated, with
 * their old thread IDs (a thread that ended only an instant before may get a new one, which
 * glibc's pthread_t then knows). Descriptors opened since the checkpoint are closed and the
 * offsets of regular files rewound; see docs/rollback.md.
 *
 * With several threads taking checkpoints, prefer a descriptor to 0: a checkpoint another thread
 * takes after this one decided to roll back, but before tlongjmp(0) names the newest, holds this
 * thread about to roll back again. */
CKPT_API int ckpt_tlongjmp(int n);

/* The memory range [addr, addr + size) keeps its current contents across every later tlongjmp()
 * (an iteration counter, a list of inputs known to be bad...). The range is copied out before a
 * rollback and written back after it. Registering the start address of a registered range again
 * replaces its size; size 0 removes the range starting at addr. At most 64 ranges and 64 MiB in
 * all. Returns 0, or -1 with errno EINVAL (NULL address, no such range to remove) or ENOSPC. */
CKPT_API int ckpt_persist(void* addr, size_t size);

/* Directions of ckpt_cache(). */
#define CKPT_CACHE_IN 0
#define CKPT_CACHE_OUT 1

/* CKPT_CACHE_IN copies [addr, addr + size) into storage the program's own bugs cannot reach (the
 * helper's memory), replacing what was cached at that address before; CKPT_CACHE_OUT copies it
 * back to [addr, addr + size), which must lie inside a range cached before. The cache is not
 * rolled back. Check the data before caching it in: a copy of corrupted data stays corrupted.
 * At most 64 MiB in all. Returns 0, or -1 with errno EINVAL (bad direction, NULL address, nothing
 * cached there), EFAULT (the range is not readable / writable) or ENOSPC. */
CKPT_API int ckpt_cache(int dir, void* addr, size_t size);

/* chkpt_status() types. The first five are the paper's. */
#define CHKPT_RECOVERED 1 /* 1 if a rollback has happened in this process, else 0 */
#define CKPT_RECOVERED CHKPT_RECOVERED
#define CKPT_FROM_STATE 2 /* the state the last rollback left (EINVAL before any) */
#define CKPT_TO_STATE 3   /* the checkpoint the last rollback went to (EINVAL before any) */
#define CKPT_SIGTYPE 4    /* the signal whose handler called tlongjmp(), 0 if none (see the doc) */
#define CKPT_NUMCHKPTS 5  /* the number of checkpoints taken so far (the last descriptor) */
#define CKPT_NUMRECOVERIES 6 /* the number of rollbacks so far */
#define CKPT_ROLLEDBACK 7    /* 1 if no tsetjmp() returned since the last rollback, else 0 */
#define CKPT_LOOPCOUNT 8     /* how many rollbacks in a row went to the same state, same signal */
#define CKPT_NUMKEPT 9       /* checkpoints kept now */
#define CKPT_CURSTATE 10 /* the state the process is in: the descriptor last returned, 0 first */

/* The program's state is the descriptor tsetjmp() last returned (0 before the first one). A
 * rollback goes "from" the current state "to" a checkpoint. Returns the value, or -1 with errno
 * EINVAL for an unknown type, or CKPT_FROM_STATE / CKPT_TO_STATE before any rollback. */
CKPT_API int ckpt_chkpt_status(int type);

/* Crash loops. When the program keeps rolling back to the same state because of the same signal,
 * the input it is working on is probably what makes it crash (a denial-of-service input): it
 * should stop retrying and drop it. CKPT_LOOPCOUNT counts such rollbacks in a row (1 after the
 * first); a rollback to another state or for another signal starts again at 1. With a handler
 * set, once the count reaches `threshold` (>= 1) the thread that returns from tsetjmp() after the
 * rollback calls fn(state, signal, count, arg) before tsetjmp() returns. fn NULL removes it.
 * Returns 0, or -1 with errno EINVAL (threshold < 1). */
typedef void (*ckpt_crashloop_fn)(int state, int sig, int count, void* arg);
CKPT_API int ckpt_set_crashloop_handler(ckpt_crashloop_fn fn, int threshold, void* arg);

/* Pins checkpoint n (retention never drops it) or unpins it. At most 32 pinned. Returns 0, or
 * -1 with errno EINVAL (not a kept checkpoint) or ENOSPC. */
CKPT_API int ckpt_pin(int n);
CKPT_API int ckpt_unpin(int n);

/* How many of the newest checkpoints retention keeps besides the pinned ones (1..1024; 8 by
 * default). Lowering it drops the excess at once. Returns 0, or -1 with errno EINVAL. */
CKPT_API int ckpt_rollback_set_keep(int n);

/* A one-line description of the calling thread's last failure; "" if none. */
CKPT_API const char* ckpt_rollback_error(void);

#ifdef __cplusplus
}
#endif

#ifndef CKPT_NO_PAPER_NAMES
#define tsetjmp() ckpt_tsetjmp()
#define tlongjmp(n) ckpt_tlongjmp(n)
#define persist(addr, size) ckpt_persist((addr), (size_t)(size))
#define cache(dir, addr, size) ckpt_cache((dir), (addr), (size_t)(size))
#define chkpt_status(type) ckpt_chkpt_status(type)
#ifndef CKPT_NO_IN_OUT
#ifndef IN
#define IN CKPT_CACHE_IN
#endif
#ifndef OUT
#define OUT CKPT_CACHE_OUT
#endif
#endif
#endif

#endif /* CKPT_ROLLBACK_H */
