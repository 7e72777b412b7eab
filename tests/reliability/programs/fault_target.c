// The target of the fault-injection tests: a process (or a tree) that checks itself.
//
//   fault_target MIB THREADS [CHILDREN]
//
// Each process fills MIB MiB (children: MIB/8) with a pattern and runs THREADS threads (children:
// 2). Every thread, the main thread included, loops on a block of assembly that loads known values
// into rbx, r12-r15 and ymm0-ymm15 (xmm0-xmm15 without AVX), spins and sleeps in a nanosleep made
// from inside the block, and stores the registers back for comparison; after each round it also
// compares its signal mask with the one it set (a different one per thread). Some threads spin
// long in user code, the others sleep in the kernel, so a dump finds both.
//
// Protocol on stdout (write(2), one line each):
//   UP PID                          once a child is set up
//   READY                           once the root and all its children are set up
//   SIGUSR1 -> CHECK PID N ok P     memory, registers and masks all right; P counts the rounds
//              FAIL PID WHAT        of its slowest thread (it grows only if no thread is stuck)
//   SIGUSR2 -> the root passes it to its children, checks itself, waits for them and prints PASS
//              (exit 0) if every process of the tree was intact, else FAIL lines (exit 1).
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "e2e_prog.h"

enum { kMaxThreads = 32, kYmm = 16 };

struct hold {
  uint64_t gin[5];  // rbx, r12..r15 to load
  uint64_t gout[5];
  uint8_t yin[kYmm][32] __attribute__((aligned(32)));
  uint8_t yout[kYmm][32] __attribute__((aligned(32)));
  long spins;
  struct timespec sleep, rem;  // sleep.tv_nsec == 0: no nanosleep
};

static int has_avx;
static volatile sig_atomic_t check_requested;
static atomic_long rounds[kMaxThreads + 1];  // per thread, [0] the main thread
static int thread_count;
static atomic_int failures;
static char first_failure[256];
static atomic_flag failure_taken = ATOMIC_FLAG_INIT;
static uint64_t* memory;
static size_t memory_words;
static uint64_t seed;
static int up_fd = -1;  // a child tells the root it is set up through this pipe

static void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char* fmt, ...) {
  atomic_fetch_add(&failures, 1);
  if (atomic_flag_test_and_set(&failure_taken)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(first_failure, sizeof first_failure, fmt, ap);
  va_end(ap);
}

#define LOAD_YMM(n) "vmovdqa " #n "*32+%c[yin](%[h]), %%ymm" #n "\n\t"
#define STORE_YMM(n) "vmovdqa %%ymm" #n ", " #n "*32+%c[yout](%[h])\n\t"
#define LOAD_XMM(n) "movdqa " #n "*32+%c[yin](%[h]), %%xmm" #n "\n\t"
#define STORE_XMM(n) "movdqa %%xmm" #n ", " #n "*32+%c[yout](%[h])\n\t"
#define ALL16(M) \
  M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

// Loads, spins, sleeps (nanosleep from here, so the registers are live across the call and any
// restart of it), stores. h stays in a register the kernel keeps across nanosleep.
#define HOLD_ASM(LOAD, STORE) \
  __asm__ volatile(                                                                               \
      "mov 0+%c[gin](%[h]), %%rbx\n\t"                                                            \
      "mov 8+%c[gin](%[h]), %%r12\n\t"                                                            \
      "mov 16+%c[gin](%[h]), %%r13\n\t"                                                           \
      "mov 24+%c[gin](%[h]), %%r14\n\t"                                                           \
      "mov 32+%c[gin](%[h]), %%r15\n\t" ALL16(LOAD) "mov %c[spins](%[h]), %%rcx\n\t"              \
      "1: dec %%rcx\n\t"                                                                          \
      "jg 1b\n\t"                                                                                 \
      "cmpq $0, 8+%c[sleep](%[h])\n\t"                                                            \
      "je 2f\n\t"                                                                                 \
      "mov $35, %%eax\n\t"                                                                        \
      "lea %c[sleep](%[h]), %%rdi\n\t"                                                            \
      "lea %c[rem](%[h]), %%rsi\n\t"                                                              \
      "syscall\n\t"                                                                               \
      "2:\n\t"                                                                                    \
      "mov %%rbx, 0+%c[gout](%[h])\n\t"                                                           \
      "mov %%r12, 8+%c[gout](%[h])\n\t"                                                           \
      "mov %%r13, 16+%c[gout](%[h])\n\t"                                                          \
      "mov %%r14, 24+%c[gout](%[h])\n\t"                                                          \
      "mov %%r15, 32+%c[gout](%[h])\n\t" ALL16(STORE)                                             \
      :                                                                                           \
      : [h] "r"(h), [gin] "i"(offsetof(struct hold, gin)), [gout] "i"(offsetof(struct hold, gout)), \
        [yin] "i"(offsetof(struct hold, yin)), [yout] "i"(offsetof(struct hold, yout)),           \
        [spins] "i"(offsetof(struct hold, spins)), [sleep] "i"(offsetof(struct hold, sleep)),     \
        [rem] "i"(offsetof(struct hold, rem))                                                     \
      : "rax", "rbx", "rcx", "rsi", "rdi", "r11", "r12", "r13", "r14", "r15", "xmm0", "xmm1",      \
        "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",  \
        "xmm13", "xmm14", "xmm15", "memory", "cc")

__attribute__((target("avx"))) static void hold_avx(struct hold* h) {
  HOLD_ASM(LOAD_YMM, STORE_YMM);
  __asm__ volatile("vzeroupper");
}

static void hold_sse(struct hold* h) {
  HOLD_ASM(LOAD_XMM, STORE_XMM);
}

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void setup_hold(struct hold* h, uint64_t id, long spins, long sleep_ns) {
  memset(h, 0, sizeof *h);
  for (int i = 0; i < 5; ++i) h->gin[i] = mix(seed * 1000 + id * 100 + (uint64_t)i);
  for (int r = 0; r < kYmm; ++r)
    for (int b = 0; b < 32; ++b) h->yin[r][b] = (uint8_t)mix(id * 7919 + (uint64_t)(r * 32 + b));
  h->spins = spins;
  h->sleep.tv_nsec = sleep_ns;
}

// One round; a difference is a failure naming the thread and the register.
static void round_and_check(struct hold* h, uint64_t id, const sigset_t* mask) {
  h->rem = (struct timespec){0, 0};
  if (has_avx)
    hold_avx(h);
  else
    hold_sse(h);
  for (int i = 0; i < 5; ++i)
    if (h->gout[i] != h->gin[i])
      fail("thread %lu: general register %d is %#lx, was %#lx", (unsigned long)id, i,
           (unsigned long)h->gout[i], (unsigned long)h->gin[i]);
  int width = has_avx ? 32 : 16;
  for (int r = 0; r < kYmm; ++r)
    if (memcmp(h->yout[r], h->yin[r], (size_t)width) != 0)
      fail("thread %lu: %cmm%d changed", (unsigned long)id, has_avx ? 'y' : 'x', r);
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  for (int sig = 1; sig < 65; ++sig)
    if (sigismember(&now, sig) != sigismember(mask, sig))
      fail("thread %lu: signal %d is %s", (unsigned long)id, sig,
           sigismember(&now, sig) ? "blocked" : "no longer blocked");
  atomic_fetch_add(&rounds[id], 1);
}

// Thread k blocks SIGUSR1, SIGUSR2 (the main thread takes them) and a signal of its own.
static void thread_mask(int k, sigset_t* mask) {
  sigemptyset(mask);
  sigaddset(mask, SIGUSR1);
  sigaddset(mask, SIGUSR2);
  sigaddset(mask, SIGRTMIN + 2 + k % 20);
  if (k % 2) sigaddset(mask, SIGWINCH);
}

static void* worker(void* arg) {
  int k = (int)(long)arg;
  sigset_t mask;
  thread_mask(k, &mask);
  pthread_sigmask(SIG_SETMASK, &mask, NULL);
  struct hold h;
  // Every third thread spins in user code (~1 ms) before a 1 ms sleep, the others mostly sleep
  // (2 ms): a dump finds threads in both places without the spinners starving a small machine.
  int spinner = k % 3 == 0;
  setup_hold(&h, (uint64_t)k + 1, spinner ? 2000000 : 1000, spinner ? 1000000 : 2000000);
  for (;;) round_and_check(&h, (uint64_t)k + 1, &mask);
  return NULL;
}

static void fill_memory(size_t mib) {
  memory_words = mib * (1u << 20) / sizeof(uint64_t);
  memory = mmap(NULL, memory_words * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    e2e_say("FAIL %d mmap: %s", getpid(), strerror(errno));
    exit(1);
  }
  for (size_t i = 0; i < memory_words; ++i) memory[i] = mix(seed ^ i);
}

static void check_memory(void) {
  for (size_t i = 0; i < memory_words; ++i)
    if (memory[i] != mix(seed ^ i)) {
      fail("memory word %zu (address %p) changed", i, (void*)&memory[i]);
      return;
    }
}

static void on_usr1(int sig) {
  (void)sig;
  check_requested = 1;
}

// The rounds of the thread that made the fewest: it grows only if every thread moves on.
static long slowest(void) {
  long least = atomic_load(&rounds[0]);
  for (int k = 1; k <= thread_count; ++k)
    if (atomic_load(&rounds[k]) < least) least = atomic_load(&rounds[k]);
  return least;
}

// Checks and reports; returns whether everything was intact.
static int report(long n) {
  check_memory();
  if (atomic_load(&failures) == 0) {
    e2e_say("CHECK %d %ld ok %ld", getpid(), n, slowest());
    return 1;
  }
  e2e_say("FAIL %d %s (%d failures)", getpid(), first_failure, atomic_load(&failures));
  return 0;
}

// The main thread holds registers too, sleeping 5 ms a round, until SIGUSR2.
static int serve(int threads) {
  pthread_t t[kMaxThreads];
  thread_count = threads;
  for (int k = 0; k < threads; ++k) e2e_thread(&t[k], worker, (void*)(long)k);
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, NULL, &mask);
  struct hold h;
  setup_hold(&h, 0, 1000, 5000000);
  if (up_fd >= 0) {
    e2e_say("UP %d", getpid());
    (void)!write(up_fd, "1", 1);
    close(up_fd);
  }
  if (up_fd < 0) e2e_say("READY");
  long checks = 0;
  while (!e2e_go) {
    round_and_check(&h, 0, &mask);
    if (check_requested) {
      check_requested = 0;
      report(++checks);
    }
  }
  return report(++checks);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    e2e_say("usage: fault_target MIB THREADS [CHILDREN]");
    return 2;
  }
  size_t mib = (size_t)atol(argv[1]);
  int threads = atoi(argv[2]), children = argc > 3 ? atoi(argv[3]) : 0;
  if (threads < 0 || threads > kMaxThreads || children < 0 || children > 16) return 2;
  has_avx = __builtin_cpu_supports("avx");
  e2e_setup();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  E2E_SYS(sigaction(SIGUSR1, &sa, NULL));
  pid_t kids[16];
  int up[2];
  E2E_SYS(pipe(up));
  for (int c = 0; c < children; ++c) {
    kids[c] = fork();
    if (kids[c] == 0) {
      close(up[0]);
      up_fd = up[1];
      seed = (uint64_t)c + 1;
      fill_memory(mib / 8 ? mib / 8 : 1);
      return serve(2) ? 0 : 1;
    }
  }
  close(up[1]);
  seed = 1000;
  fill_memory(mib);
  char byte;
  for (int c = 0; c < children; ++c)
    if (read(up[0], &byte, 1) != 1) {
      e2e_say("FAIL a child died while setting up");
      return 1;
    }
  close(up[0]);
  int ok = serve(threads);
  for (int c = 0; c < children; ++c) kill(kids[c], SIGUSR2);
  for (int c = 0; c < children; ++c) {
    int st = 0;
    if (waitpid(kids[c], &st, 0) != kids[c] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      e2e_say("FAIL child %d ended with status %#x", kids[c], st);
      ok = 0;
    }
  }
  if (ok) e2e_say("PASS");
  return ok ? 0 : 1;
}
