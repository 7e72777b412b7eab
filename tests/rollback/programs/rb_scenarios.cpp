// Scenarios of the rollback API, one per run ("rb_scenarios NAME"): a rollback takes the whole
// process back, so each runs in a process of its own. A scenario prints PASS and exits 0, or
// prints "FAIL line N: ..." on stderr and exits 1. rollback_test.cpp runs them; the scenarios
// about threads are in rb_threads.cpp.
//
// Each scenario keeps a `phase` in persist() memory: it survives the rollbacks and tells the
// code after tsetjmp() which pass it is in.
#include "rb_common.hpp"

namespace rbprog {
namespace {

// --- basic: memory of every kind comes back ------------------------------------------------
volatile int g_data = 1;
volatile int g_bss;

void basic() {
  persist_phase();
  auto* heap = new std::vector<int>(1000, 7);
  size_t big_len = 4 << 20;
  auto* big = static_cast<char*>(malloc(big_len));  // its own mapping (malloc uses mmap)
  memset(big, 'a', big_len);
  volatile int local = 5;
  int d = tsetjmp();
  CHECK(d == 1);
  if (phase == 0) {
    phase = 1;
    CHECK(chkpt_status(CKPT_ROLLEDBACK) == 0);
    CHECK(chkpt_status(CHKPT_RECOVERED) == 0);
    g_data = 2;
    g_bss = 3;
    (*heap)[10] = 99;
    heap->resize(100000, 1);
    local = 6;
    memset(big, 'b', big_len);
    free(big);                                          // unmapped
    auto* fresh = static_cast<char*>(malloc(8 << 20));  // a new mapping
    memset(fresh, 'c', 8 << 20);
    tlongjmp(0);
    CHECK(!"tlongjmp returned");
  }
  CHECK(chkpt_status(CKPT_ROLLEDBACK) == 1);
  CHECK(g_data == 1 && g_bss == 0 && local == 5);
  CHECK(heap->size() == 1000 && (*heap)[10] == 7);
  for (size_t i = 0; i < big_len; i += 4096) CHECK(big[i] == 'a' && big[i + 4095] == 'a');
  CHECK(chkpt_status(CHKPT_RECOVERED) == 1);
  CHECK(chkpt_status(CKPT_FROM_STATE) == 1 && chkpt_status(CKPT_TO_STATE) == 1);
  CHECK(chkpt_status(CKPT_SIGTYPE) == 0);  // not called from a signal handler
  CHECK(chkpt_status(CKPT_NUMRECOVERIES) == 1 && chkpt_status(CKPT_NUMCHKPTS) == 1);
  CHECK(chkpt_status(CKPT_CURSTATE) == 1);
  pass();
}

// --- nested: back to 2, then to 1; descriptors ------------------------------------------------
void nested() {
  persist_phase();
  static volatile int x;
  x = 1;
  int d1 = tsetjmp();
  CHECK(d1 == 1);
  if (phase == 0) {
    x = 2;
    int d2 = tsetjmp();
    CHECK(d2 == 2);
    if (phase == 0) {
      phase = 1;
      x = 3;
      int d3 = tsetjmp();
      CHECK(d3 == 3);
      CHECK(chkpt_status(CKPT_NUMCHKPTS) == 3 && chkpt_status(CKPT_NUMKEPT) == 3);
      x = 4;
      tlongjmp(2);
      CHECK(!"tlongjmp(2) returned");
    }
    CHECK(phase == 1 && x == 2);
    CHECK(chkpt_status(CKPT_FROM_STATE) == 3 && chkpt_status(CKPT_TO_STATE) == 2);
    CHECK(chkpt_status(CKPT_NUMKEPT) == 2);  // 3 is gone: it was in the future of 2
    errno = 0;
    CHECK(tlongjmp(3) == -1 && errno == EINVAL);
    phase = 2;
    x = 5;
    tlongjmp(1);
    CHECK(!"tlongjmp(1) returned");
  }
  CHECK(phase == 2 && x == 1);
  CHECK(chkpt_status(CKPT_FROM_STATE) == 2 && chkpt_status(CKPT_TO_STATE) == 1);
  CHECK(chkpt_status(CKPT_NUMRECOVERIES) == 2 && chkpt_status(CKPT_NUMKEPT) == 1);
  int d4 = tsetjmp();
  CHECK(d4 == 4);  // descriptors are never reused
  if (phase == 2) {
    phase = 3;
    x = 6;
    tlongjmp(0);  // the newest: 4
  }
  CHECK(phase == 3 && x == 1);
  CHECK(chkpt_status(CKPT_TO_STATE) == 4 && chkpt_status(CKPT_FROM_STATE) == 4);
  CHECK(chkpt_status(CKPT_CURSTATE) == 4 && chkpt_status(CKPT_NUMCHKPTS) == 4);
  pass();
}

// --- einval: every refusal ---------------------------------------------------------------------
void loop_noop(int, int, int, void*) {}

void einval() {
  errno = 0;
  CHECK(tlongjmp(0) == -1 && errno == EINVAL);  // nothing taken yet
  CHECK(strlen(ckpt_rollback_error()) > 0);
  errno = 0;
  CHECK(chkpt_status(CKPT_FROM_STATE) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(chkpt_status(CKPT_TO_STATE) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(chkpt_status(12345) == -1 && errno == EINVAL);
  CHECK(chkpt_status(CKPT_NUMCHKPTS) == 0 && chkpt_status(CHKPT_RECOVERED) == 0);
  static int x = 1, y = 2;
  errno = 0;
  CHECK(persist(nullptr, 4) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(cache(7, &x, sizeof x) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(cache(IN, nullptr, 4) == -1 && errno == EINVAL);
  CHECK(tsetjmp() == 1);
  errno = 0;
  CHECK(tlongjmp(-1) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tlongjmp(2) == -1 && errno == EINVAL);  // not taken
  errno = 0;
  CHECK(ckpt_rollback_set_keep(0) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(ckpt_rollback_set_keep(65) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(ckpt_pin(99) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(ckpt_unpin(99) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(persist(&x, 0) == -1 && errno == EINVAL);  // nothing persisted there
  errno = 0;
  CHECK(cache(OUT, &y, sizeof y) == -1 && errno == EINVAL);  // nothing cached there
  CHECK(cache(IN, &x, sizeof x) == 0);
  errno = 0;
  CHECK(cache(OUT, &x, 2 * sizeof x) == -1 && errno == EINVAL);  // more than was cached
  errno = 0;
  CHECK(cache(IN, reinterpret_cast<void*>(uintptr_t{4096}), 4) == -1 && errno == EFAULT);
  errno = 0;
  CHECK(ckpt_set_crashloop_handler(loop_noop, 0, nullptr) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(persist(&x, size_t{65} << 20) == -1 && errno == ENOSPC);
  pass();
}

// --- retention: a tsetjmp() loop stays bounded; pins
// ----------------------------------------------
int count_children(int* zombies) {
  int n = 0;
  *zombies = 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", getpid(), getpid());
  FILE* f = fopen(path, "r");
  int pid;
  while (f && fscanf(f, "%d", &pid) == 1) {
    ++n;
    char stat[64], buf[256];
    snprintf(stat, sizeof stat, "/proc/%d/stat", pid);
    FILE* s = fopen(stat, "r");
    if (s && fgets(buf, sizeof buf, s)) {
      const char* close = strrchr(buf, ')');
      if (close && close[2] == 'Z') ++*zombies;
    }
    if (s) fclose(s);
  }
  if (f) fclose(f);
  return n;
}

void retention() {
  persist_phase();
  CHECK(ckpt_rollback_set_keep(3) == 0);
  for (int i = 1; i <= 200; ++i) {
    CHECK(tsetjmp() == i);
    CHECK(chkpt_status(CKPT_NUMKEPT) <= 3);
  }
  CHECK(chkpt_status(CKPT_NUMKEPT) == 3);
  errno = 0;
  CHECK(tlongjmp(197) == -1 && errno == EINVAL);
  int zombies = 0;
  // The helper, 3 snapshots, and at most the few killed ones not reaped yet.
  int children = count_children(&zombies);
  CHECK(children <= 1 + 3 + 4);
  CHECK(zombies <= 4);
  int d = tsetjmp();  // 201
  CHECK(d == 201);
  if (phase == 0) {
    phase = 1;
    CHECK(ckpt_pin(d) == 0);
    for (int i = 202; i <= 210; ++i) CHECK(tsetjmp() == i);
    CHECK(chkpt_status(CKPT_NUMKEPT) == 4);  // 201 (pinned) and the 3 newest
    tlongjmp(d);
    CHECK(!"tlongjmp returned");
  }
  CHECK(chkpt_status(CKPT_NUMKEPT) == 1);
  CHECK(ckpt_unpin(d) == 0);
  sleep_ms(100);
  CHECK(ckpt_rollback_set_keep(8) == 0);  // a call: reaps what was killed meanwhile
  children = count_children(&zombies);
  CHECK(children <= 1 + 1 + 10);
  pass();
}

// --- persist ------------------------------------------------------------------------------------
alignas(4096) char g_area[3 * 4096 + 200];
int g_counter;
int g_neighbour;  // next to g_counter, not persisted

void persistence() {
  persist_phase();
  CHECK(persist(&g_counter, sizeof g_counter) == 0);
  CHECK(persist(g_area + 100, 5000) == 0);
  memset(g_area, 'a', sizeof g_area);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    g_counter = 5;
    g_neighbour = 1;
    memset(g_area, 'x', sizeof g_area);
    tlongjmp(d);
  }
  if (phase == 1) {
    CHECK(g_counter == 5 && g_neighbour == 0);
    CHECK(g_area[0] == 'a' && g_area[99] == 'a');
    CHECK(g_area[100] == 'x' && g_area[4096] == 'x' && g_area[5099] == 'x');
    CHECK(g_area[5100] == 'a' && g_area[sizeof g_area - 1] == 'a');
    CHECK(persist(&g_counter, 0) == 0);     // no longer persistent
    CHECK(persist(g_area + 100, 10) == 0);  // a new size for the same start
    phase = 2;
    g_counter = 7;
    memset(g_area, 'y', sizeof g_area);
    tlongjmp(d);
  }
  CHECK(phase == 2);
  CHECK(g_counter == 0);  // its value at the checkpoint
  CHECK(g_area[100] == 'y' && g_area[109] == 'y' && g_area[110] == 'a');
  pass();
}

// --- cache
// ----------------------------------------------------------------------------------------
struct Config {
  int a;
  char name[32];
};
Config g_cfg = {1, "good"};

void caching() {
  persist_phase();
  CHECK(cache(IN, &g_cfg, sizeof g_cfg) == 0);
  g_cfg.a = 666;
  strcpy(g_cfg.name, "corrupted!");
  CHECK(cache(OUT, &g_cfg, sizeof g_cfg) == 0);
  CHECK(g_cfg.a == 1 && strcmp(g_cfg.name, "good") == 0);
  g_cfg.a = 5;
  strcpy(g_cfg.name, "xxxx");
  CHECK(cache(OUT, g_cfg.name, 5) == 0);  // part of the cached range
  CHECK(g_cfg.a == 5 && strcmp(g_cfg.name, "good") == 0);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    g_cfg.a = 2;
    CHECK(cache(IN, &g_cfg, sizeof g_cfg) == 0);
    g_cfg.a = 3;
    tlongjmp(d);
  }
  CHECK(g_cfg.a == 5);  // memory as at the checkpoint
  CHECK(cache(OUT, &g_cfg, sizeof g_cfg) == 0);
  CHECK(g_cfg.a == 2);  // the cache is not rolled back
  pass();
}

// --- signals: from SIGSEGV, SIGBUS, SIGFPE, SIGABRT handlers; mask and handlers come back -------
void usr2_a(int) {}
void usr2_b(int) {}

void signals() {
  persist_phase();
  catch_faults();
  CHECK(signal(SIGUSR2, usr2_a) != SIG_ERR);
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  CHECK(sigprocmask(SIG_BLOCK, &m, nullptr) == 0);
  char path[] = "/tmp/rb-sigbus-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
  unlink(path);
  auto* bus =
      static_cast<volatile char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  CHECK(bus != MAP_FAILED);
  int d = tsetjmp();
  CHECK(d == 1);
  static const int expect[] = {0, SIGSEGV, SIGBUS, SIGFPE, SIGABRT};
  if (phase > 0) {
    CHECK(chkpt_status(CKPT_ROLLEDBACK) == 1);
    CHECK(chkpt_status(CKPT_SIGTYPE) == expect[phase]);
    CHECK(chkpt_status(CKPT_LOOPCOUNT) == 1);  // another signal each time
    sigset_t cur;
    CHECK(sigprocmask(SIG_SETMASK, nullptr, &cur) == 0);
    CHECK(sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGUSR2));
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGABRT}) CHECK(!sigismember(&cur, sig));
    struct sigaction now {};
    CHECK(sigaction(SIGUSR2, nullptr, &now) == 0 && now.sa_handler == usr2_a);
  }
  // Changes the rollback must undo.
  CHECK(signal(SIGUSR2, usr2_b) != SIG_ERR);
  sigset_t swap;
  sigemptyset(&swap);
  sigaddset(&swap, SIGUSR2);
  CHECK(sigprocmask(SIG_BLOCK, &swap, nullptr) == 0);
  CHECK(sigprocmask(SIG_UNBLOCK, &m, nullptr) == 0);
  switch (phase++) {
    case 0:
      segfault();
    case 1:
      CHECK(ftruncate(fd, 0) == 0);
      bus[0] = 1;
      CHECK(!"no SIGBUS");
      break;
    case 2:
      divide_by_zero();
    case 3:
      abort();
    default:
      CHECK(chkpt_status(CKPT_NUMRECOVERIES) == 4);
      pass();
  }
}

// --- overflow: a stack overflow caught on the alternate stack -----------------------------------
char g_altstack[64 * 1024];

// Deeper and deeper until the stack runs out (the depth comes from memory the compiler cannot
// see through, so it cannot prove the recursion endless).
volatile int g_depth_limit = 1 << 30;

int recurse(int n) {
  volatile char buf[1024];
  buf[0] = static_cast<char>(n);
  if (n >= g_depth_limit) return buf[0];
  return recurse(n + 1) + buf[0];
}

void overflow() {
  persist_phase();
  stack_t ss{};
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof g_altstack;
  CHECK(sigaltstack(&ss, nullptr) == 0);
  catch_faults(SA_ONSTACK);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    recurse(0);
  }
  CHECK(d == 1 && chkpt_status(CKPT_SIGTYPE) == SIGSEGV);
  stack_t cur{};
  CHECK(sigaltstack(nullptr, &cur) == 0);
  CHECK(cur.ss_sp == g_altstack && !(cur.ss_flags & SS_DISABLE) && !(cur.ss_flags & SS_ONSTACK));
  volatile char deep[256 * 1024];  // the stack is usable again
  deep[0] = 1;
  deep[sizeof deep - 1] = 1;
  pass();
}

// --- crashloop: the same state and signal again and again ----------------------------------------
int g_calls, g_loop_state, g_loop_sig, g_loop_count;

void on_loop(int state, int sig, int count, void* arg) {
  g_loop_state = state;
  g_loop_sig = sig;
  g_loop_count = count;
  ++*static_cast<int*>(arg);
}

void crashloop() {
  persist_phase();
  CHECK(persist(&g_calls, sizeof g_calls) == 0);
  catch_faults();
  CHECK(ckpt_set_crashloop_handler(on_loop, 3, &g_calls) == 0);
  int d = tsetjmp();
  if (phase == 0) {
    int loops = chkpt_status(CKPT_LOOPCOUNT);
    if (g_calls == 0) segfault();  // this input keeps crashing us
    CHECK(g_calls == 1 && loops == 3 && g_loop_count == 3);
    CHECK(g_loop_state == d && g_loop_sig == SIGSEGV);
    CHECK(chkpt_status(CKPT_NUMRECOVERIES) == 3);
    phase = 1;
    divide_by_zero();
  }
  CHECK(chkpt_status(CKPT_LOOPCOUNT) == 1 && chkpt_status(CKPT_SIGTYPE) == SIGFPE);
  CHECK(g_calls == 1);
  pass();
}

// --- mappings: unmapped, mapped, protected, brk, private file pages ----------------------------
uintptr_t g_new_map;  // persisted

void mappings() {
  persist_phase();
  CHECK(persist(&g_new_map, sizeof g_new_map) == 0);
  const size_t page = 4096;
  auto* m1 = static_cast<char*>(
      mmap(nullptr, 16 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  auto* m2 = static_cast<char*>(
      mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  auto* m4 = static_cast<char*>(
      mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  CHECK(m1 != MAP_FAILED && m2 != MAP_FAILED && m4 != MAP_FAILED);
  memset(m1, 'a', 16 * page);
  memset(m2, 'b', 4 * page);
  memset(m4, 'd', 8 * page);
  char path[] = "/tmp/rb-map-XXXXXX";
  int fd = mkstemp(path);
  std::string text(2 * page, 'f');
  CHECK(fd >= 0 && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  unlink(path);
  auto* f1 =
      static_cast<char*>(mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
  CHECK(f1 != MAP_FAILED && f1[0] == 'f');
  f1[page] = 'g';  // a private copy made before the checkpoint
  void* brk0 = sbrk(0);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    auto* m3 = static_cast<char*>(
        mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    CHECK(m3 != MAP_FAILED);
    memset(m3, 'c', 8 * page);
    CHECK(munmap(m1, 16 * page) == 0);
    g_new_map = reinterpret_cast<uintptr_t>(m3);
    CHECK(mprotect(m2, 4 * page, PROT_READ) == 0);
    CHECK(madvise(m4 + 2 * page, 3 * page, MADV_DONTNEED) == 0);
    CHECK(sbrk(1 << 20) != reinterpret_cast<void*>(-1));
    memset(brk0, 'h', 1 << 20);
    f1[0] = 'X';
    f1[page] = 'Y';
    tlongjmp(d);
  }
  for (size_t i = 0; i < 16 * page; i += 512) CHECK(m1[i] == 'a');
  CHECK(msync(reinterpret_cast<void*>(g_new_map), 8 * page, MS_ASYNC) == -1 && errno == ENOMEM);
  CHECK(m2[0] == 'b' && m2[4 * page - 1] == 'b');
  m2[0] = 'z';  // writable again
  for (size_t i = 0; i < 8 * page; i += 512) CHECK(m4[i] == 'd');
  CHECK(sbrk(0) == brk0);
  CHECK(f1[0] == 'f' && f1[page] == 'g' && f1[page + 1] == 'f');
  pass();
}

// --- big: 64 MiB, scattered and contiguous writes, dropped and unmapped pages ------------------
uint64_t pattern(size_t i) {
  return (i * 0x9e3779b97f4a7c15ull) ^ (i >> 7);
}

void big() {
  persist_phase();
  const size_t len = 64 << 20, n = len / 8;
  auto* a = static_cast<uint64_t*>(
      mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  CHECK(a != MAP_FAILED);
  for (size_t i = 0; i < n; ++i) a[i] = pattern(i);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    for (size_t i = 0; i < n; i += 100 * 512) a[i] = 0;  // 1 % of the pages
    memset(a + (8 << 20) / 8, 0xee, 1 << 20);            // 1 MiB in one piece
    CHECK(madvise(a + (16 << 20) / 8, 256 << 10, MADV_DONTNEED) == 0);
    CHECK(munmap(a + (32 << 20) / 8, 64 << 10) == 0);  // a hole splits the mapping
    CHECK(mprotect(a + (48 << 20) / 8, 1 << 20, PROT_READ) == 0);
    tlongjmp(d);
  }
  for (size_t i = 0; i < n; ++i)
    if (a[i] != pattern(i)) fail_at(__LINE__, ("word " + std::to_string(i)).c_str());
  a[(48 << 20) / 8] = pattern((48 << 20) / 8);  // writable again
  pass();
}

// --- fork_child: a child of the program gets its own helper --------------------------------------
int g_child_phase;
int g_value = 1;

void fork_child() {
  persist_phase();
  CHECK(tsetjmp() == 1);
  pid_t c = fork();
  CHECK(c >= 0);
  if (c == 0) {
    CHECK(chkpt_status(CKPT_NUMCHKPTS) == 0);  // the parent's checkpoints are not ours
    CHECK(persist(&g_child_phase, sizeof g_child_phase) == 0);
    int e = tsetjmp();
    CHECK(e == 1);
    if (g_child_phase == 0) {
      g_child_phase = 1;
      g_value = 9;
      tlongjmp(e);
    }
    CHECK(g_value == 1);
    _exit(0);
  }
  int st = 0;
  CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(chkpt_status(CKPT_NUMCHKPTS) == 1);
  int d = tsetjmp();
  CHECK(d == 2);
  if (phase == 0) {
    phase = 1;
    g_value = 3;
    tlongjmp(d);
  }
  CHECK(g_value == 1);
  pass();
}

// --- fds: descriptors opened since are closed, offsets rewound, locks --------------------------
int g_fd_new = -1, g_fd_locked = -1;  // persisted

// Whether another process sees `fd`'s file locked over [0, 10).
bool locked_elsewhere(const char* path) {
  pid_t c = fork();
  if (c == 0) {
    int fd = open(path, O_RDWR);
    struct flock q {};
    q.l_type = F_WRLCK;
    q.l_whence = SEEK_SET;
    q.l_len = 10;
    if (fd < 0 || fcntl(fd, F_GETLK, &q) < 0) _exit(2);
    _exit(q.l_type == F_UNLCK ? 0 : 1);
  }
  int st = 0;
  waitpid(c, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 2);
  return WEXITSTATUS(st) == 1;
}

void fds() {
  persist_phase();
  CHECK(persist(&g_fd_new, sizeof g_fd_new) == 0);
  CHECK(persist(&g_fd_locked, sizeof g_fd_locked) == 0);
  char kept_path[] = "/tmp/rb-fd-a-XXXXXX";
  char late_path[] = "/tmp/rb-fd-b-XXXXXX";
  int fa = mkstemp(kept_path);
  int fl = mkstemp(late_path);
  CHECK(fa >= 0 && fl >= 0 && close(fl) == 0);
  std::string text(100, 't');
  CHECK(write(fa, text.data(), text.size()) == 100 && lseek(fa, 10, SEEK_SET) == 10);
  int p[2];
  CHECK(pipe2(p, O_NONBLOCK) == 0 && write(p[1], "hello", 5) == 5);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    g_fd_new = open("/dev/null", O_RDONLY);
    CHECK(g_fd_new >= 0 && lseek(fa, 50, SEEK_SET) == 50);
    char buf[8];
    CHECK(read(p[0], buf, 5) == 5);
    struct flock lk {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    lk.l_len = 10;
    CHECK(fcntl(fa, F_SETLK, &lk) == 0);  // through a descriptor of the checkpoint: kept
    g_fd_locked = open(late_path, O_RDWR);
    CHECK(g_fd_locked >= 0 && fcntl(g_fd_locked, F_SETLK, &lk) == 0);  // closed: released
    CHECK(locked_elsewhere(kept_path) && locked_elsewhere(late_path));
    tlongjmp(d);
  }
  errno = 0;
  CHECK(fcntl(g_fd_new, F_GETFD) == -1 && errno == EBADF);
  errno = 0;
  CHECK(fcntl(g_fd_locked, F_GETFD) == -1 && errno == EBADF);
  CHECK(lseek(fa, 0, SEEK_CUR) == 10);
  char buf[8];
  errno = 0;
  CHECK(read(p[0], buf, 5) == -1 && errno == EAGAIN);          // what was read stays read
  CHECK(write(p[1], "x", 1) == 1 && read(p[0], buf, 1) == 1);  // the pipe works
  CHECK(locked_elsewhere(kept_path));
  CHECK(!locked_elsewhere(late_path));
  unlink(kept_path);
  unlink(late_path);
  pass();
}

// --- children: a child started since stays; the helper and snapshots are not seen ---------------
pid_t g_child;  // persisted

void children() {
  persist_phase();
  CHECK(persist(&g_child, sizeof g_child) == 0);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    g_child = fork();
    if (g_child == 0) {
      pause();
      _exit(0);
    }
    tlongjmp(d);
  }
  CHECK(g_child > 0 && kill(g_child, 0) == 0);
  int st;
  CHECK(waitpid(-1, &st, WNOHANG) == 0);  // only that child is there to wait for
  CHECK(kill(g_child, SIGKILL) == 0);
  CHECK(waitpid(-1, &st, 0) == g_child);
  errno = 0;
  CHECK(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD);
  pass();
}

// --- cpp: the C++ wrapper: Persistent, Pin, checkpoint/rollback, status -----------------------
void cpp() {
  namespace rb = ckpt::rollback;
  rb::Persistent<int> passes(0);
  CHECK(passes.ok());
  static int plain = 1;
  CHECK(rb::set_keep(2).ok());
  auto first = rb::checkpoint();
  CHECK(first.ok() && *first == 1);
  rb::Pin pin(*first);
  CHECK(pin.ok());
  for (int i = 0; i < 5; ++i) CHECK(rb::checkpoint().ok());  // retention keeps 1 all the same
  if (*passes == 0) {
    ++*passes;
    plain = 2;
    ckpt::AppError e = rb::rollback(*first);
    CHECK(!"rollback returned");
    (void)e;
  }
  CHECK(*passes == 1 && plain == 1);
  rb::Status st = rb::status();
  // The five checkpoints after the first were taken again (7 to 11) since the rollback.
  CHECK(st.recovered && !st.rolled_back && st.to_state == 1 && st.from_state == 6);
  CHECK(st.recoveries == 1 && st.checkpoints == 11 && st.kept == 3 && st.current_state == 11);
  ckpt::AppError e = rb::rollback(42);
  CHECK(e.errnum == EINVAL && !e.message.empty());
  CHECK(rb::cache_in(plain).ok());
  plain = 7;
  CHECK(rb::cache_out(plain).ok() && plain == 1);
  pass();
}

// --- quiet: the run the parent watches (rollback_test.cpp, ParentSeesNothing) ------------------
void quiet() {
  persist_phase();
  catch_faults();
  pid_t before = getpid();
  dprintf(1, "pid %d\n", before);
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    segfault();
  }
  CHECK(d == 1 && chkpt_status(CKPT_SIGTYPE) == SIGSEGV);
  int st;
  errno = 0;
  CHECK(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD);  // no child of ours to see
  dprintf(1, "after %d\n", getpid());
  char c;
  CHECK(read(0, &c, 1) == 1);  // the parent looks, then lets us end
  pass();
}

// --- stdout_closed: the helper keeps none of the program's stdio open --------------------------
void stdout_closed() {
  CHECK(tsetjmp() == 1);
  dprintf(1, "checkpointed\n");
  CHECK(close(1) == 0);  // the reader must see the end of our output now
  char c;
  CHECK(read(0, &c, 1) == 1);
  pass();  // (to a closed stdout: the parent judges by the exit status)
}

const Scenario kScenarios[] = {
    {"basic", basic},
    {"nested", nested},
    {"einval", einval},
    {"retention", retention},
    {"persist", persistence},
    {"cache", caching},
    {"signals", signals},
    {"overflow", overflow},
    {"crashloop", crashloop},
    {"mappings", mappings},
    {"big", big},
    {"fork_child", fork_child},
    {"fds", fds},
    {"children", children},
    {"cpp", cpp},
    {"quiet", quiet},
    {"stdout_closed", stdout_closed},
};

}  // namespace
}  // namespace rbprog

int main(int argc, char** argv) {
  return rbprog::run_scenario(rbprog::kScenarios, argc, argv);
}
