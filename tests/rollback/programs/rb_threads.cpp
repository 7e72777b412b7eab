// Scenarios of the rollback API about threads, one per run ("rb_threads NAME"); see
// rb_scenarios.cpp.
#include "rb_common.hpp"

namespace rbprog {
namespace {

// --- other_thread: tlongjmp() from a thread started after the checkpoint ----------------------
void* rollback_from_thread(void*) {
  tlongjmp(0);
  return reinterpret_cast<void*>(1);
}

void other_thread() {
  persist_phase();
  int d = tsetjmp();
  if (phase == 0) {
    phase = 1;
    pthread_t t;
    CHECK(pthread_create(&t, nullptr, rollback_from_thread, nullptr) == 0);
    pthread_join(t, nullptr);
    CHECK(!"pthread_join returned: the rollback did not happen");
  }
  CHECK(d == 1 && chkpt_status(CKPT_ROLLEDBACK) == 1);
  CHECK(count_threads() == 1);  // the thread that asked is gone: it did not exist then
  pass();
}

// --- threads: four threads, one corrupts shared state and faults ---------------------------------
constexpr int kThreads = 4;
constexpr int kAccounts = 64;
constexpr long kTotal = 1000L * kAccounts;

struct Bank {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  long balance[kAccounts];
  long ops[kThreads];
};
Bank g_bank;

struct Shared {  // persisted; read and written with atomics across threads
  int go_corrupt;
  int corrupted;
  int stop;
  int violations;
  long post[kThreads];  // iterations after the rollback
  pid_t tids[kThreads];
};
Shared g_shared;
thread_local long t_ops;

template <typename T>
T load(T& v) {
  return __atomic_load_n(&v, __ATOMIC_SEQ_CST);
}
template <typename T>
void store(T& v, T x) {
  __atomic_store_n(&v, x, __ATOMIC_SEQ_CST);
}
template <typename T>
void bump(T& v) {
  __atomic_add_fetch(&v, 1, __ATOMIC_SEQ_CST);
}

void* bank_worker(void* arg) {
  int me = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  store(g_shared.tids[me], gettid_());
  unsigned seed = static_cast<unsigned>(me) + 1;
  while (!load(g_shared.stop)) {
    pthread_mutex_lock(&g_bank.mu);
    long sum = 0;
    for (long b : g_bank.balance) sum += b;
    // The invariants: money is neither made nor lost, and each thread's count in the bank is
    // the one it keeps itself (in thread-local storage, restored with the rest).
    if (sum != kTotal || g_bank.ops[me] != t_ops) bump(g_shared.violations);
    if (me == kThreads - 1 && load(g_shared.go_corrupt) && !load(g_shared.corrupted)) {
      store(g_shared.corrupted, 1);
      for (long& b : g_bank.balance) b = -1;
      g_bank.ops[0] = 12345;
      segfault();  // holding the lock
    }
    int from = static_cast<int>(rand_r(&seed) % kAccounts);
    int to = static_cast<int>(rand_r(&seed) % kAccounts);
    long amount = rand_r(&seed) % 10;
    g_bank.balance[from] -= amount;
    g_bank.balance[to] += amount;
    ++g_bank.ops[me];
    ++t_ops;
    pthread_mutex_unlock(&g_bank.mu);
    if (chkpt_status(CKPT_NUMRECOVERIES) > 0) bump(g_shared.post[me]);
    if (gettid_() != load(g_shared.tids[me])) bump(g_shared.violations);
  }
  return nullptr;
}

void threads() {
  CHECK(persist(&g_shared, sizeof g_shared) == 0);
  catch_faults();
  for (long& b : g_bank.balance) b = 1000;
  pthread_t t[kThreads];
  for (int i = 0; i < kThreads; ++i)
    CHECK(pthread_create(&t[i], nullptr, bank_worker, reinterpret_cast<void*>(intptr_t{i})) == 0);
  for (int i = 0; i < kThreads; ++i)
    while (__atomic_load_n(&g_bank.ops[i], __ATOMIC_RELAXED) < 1000) sleep_ms(1);
  int d = tsetjmp();
  CHECK(d == 1);
  if (chkpt_status(CKPT_ROLLEDBACK) == 0) {
    store(g_shared.go_corrupt, 1);
    for (int i = 0; i < 30000; ++i) sleep_ms(1);
    CHECK(!"no rollback within 30 s");
  }
  CHECK(chkpt_status(CKPT_SIGTYPE) == SIGSEGV && load(g_shared.corrupted) == 1);
  for (int i = 0; i < kThreads; ++i)
    for (int w = 0; load(g_shared.post[i]) < 2000; ++w) {
      CHECK(w < 30000);
      sleep_ms(1);
    }
  store(g_shared.stop, 1);
  for (auto& th : t) CHECK(pthread_join(th, nullptr) == 0);
  CHECK(load(g_shared.violations) == 0);
  long sum = 0;
  for (long b : g_bank.balance) sum += b;
  CHECK(sum == kTotal);
  pass();
}

// --- recreate: a thread that ended after the checkpoint comes back, tid and all ----------------
int g_to_worker[2], g_from_worker[2];
pid_t g_worker_tid;  // persisted

void* pinger(void*) {
  g_worker_tid = gettid_();
  for (;;) {
    char c;
    if (read(g_to_worker[0], &c, 1) != 1) continue;
    if (c == 'q') return nullptr;
    pid_t me = gettid_();
    if (write(g_from_worker[1], &me, sizeof me) != sizeof me) return nullptr;
  }
}

pid_t ping() {
  pid_t tid = 0;
  CHECK(write(g_to_worker[1], "p", 1) == 1);
  CHECK(read(g_from_worker[0], &tid, sizeof tid) == sizeof tid);
  return tid;
}

void recreate() {
  persist_phase();
  CHECK(persist(&g_worker_tid, sizeof g_worker_tid) == 0);
  CHECK(pipe(g_to_worker) == 0 && pipe(g_from_worker) == 0);
  pthread_t th;
  CHECK(pthread_create(&th, nullptr, pinger, nullptr) == 0);
  pid_t tid = ping();
  int d = tsetjmp();  // the worker is blocked in read()
  if (phase == 0) {
    phase = 1;
    CHECK(write(g_to_worker[1], "q", 1) == 1);
    CHECK(pthread_join(th, nullptr) == 0);
    CHECK(thread_gone(tid));
    tlongjmp(d);
  }
  CHECK(thread_exists(tid));
  CHECK(ping() == tid);  // it runs, with its old tid
  CHECK(write(g_to_worker[1], "q", 1) == 1);
  CHECK(pthread_join(th, nullptr) == 0);  // glibc's record of it is whole: join works
  CHECK(thread_gone(tid));
  pass();
}

// --- eintr: taking checkpoints never interrupts a blocked call
// ------------------------------------
std::atomic<bool> g_stop_io;
std::atomic<int> g_eintr, g_io_rounds;
int g_io_pipe[2];

void on_usr1(int) {}

void* blocking_io(void*) {
  int ep = epoll_create1(0);
  while (!g_stop_io) {
    timespec ts{0, 2000000};
    if (nanosleep(&ts, nullptr) < 0 && errno == EINTR) ++g_eintr;
    if (poll(nullptr, 0, 2) < 0 && errno == EINTR) ++g_eintr;
    epoll_event ev;
    if (epoll_wait(ep, &ev, 1, 2) < 0 && errno == EINTR) ++g_eintr;
    char c;
    if (read(g_io_pipe[0], &c, 1) < 0 && errno == EINTR) ++g_eintr;
    ++g_io_rounds;
  }
  close(ep);
  return nullptr;
}

void* feeder(void*) {
  while (!g_stop_io) {
    if (write(g_io_pipe[1], "x", 1) != 1) break;
    sleep_ms(3);
  }
  return nullptr;
}

void eintr() {
  struct sigaction sa {};
  sa.sa_handler = on_usr1;  // no SA_RESTART: a real signal would make those calls fail
  CHECK(sigaction(SIGUSR1, &sa, nullptr) == 0);
  CHECK(pipe(g_io_pipe) == 0);
  pthread_t a, b;
  CHECK(pthread_create(&a, nullptr, blocking_io, nullptr) == 0);
  CHECK(pthread_create(&b, nullptr, feeder, nullptr) == 0);
  for (int i = 1; i <= 60; ++i) {
    CHECK(tsetjmp() == i);
    sleep_ms(1 + i % 4);
  }
  g_stop_io = true;
  CHECK(pthread_join(b, nullptr) == 0);
  CHECK(write(g_io_pipe[1], "x", 1) == 1);
  CHECK(pthread_join(a, nullptr) == 0);
  CHECK(g_io_rounds > 10);
  CHECK(g_eintr == 0);
  pass();
}

// --- concurrent: threads taking checkpoints at once; a rollback while they do --------------------
std::atomic<int> g_taken;
constexpr int kTakers = 4, kTakesEach = 15;
// Every checkpoint of the test is kept (at most 64 are), so that the one gone back to is still
// there however far the threads got meanwhile.
static_assert(1 + kTakers * kTakesEach <= 64);
int g_descriptors[kTakers][kTakesEach];  // persisted

void* take_many(void* arg) {
  int me = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  for (int i = 0; i < kTakesEach; ++i) {
    int d = tsetjmp();
    if (d < 0) fail_at(__LINE__, "tsetjmp in a thread");
    if (!g_descriptors[me][i]) __atomic_store_n(&g_descriptors[me][i], d, __ATOMIC_SEQ_CST);
    ++g_taken;
  }
  return nullptr;
}

void concurrent() {
  persist_phase();
  CHECK(persist(g_descriptors, sizeof g_descriptors) == 0);
  CHECK(ckpt_rollback_set_keep(64) == 0);  // the checkpoint chosen below must still be kept
  CHECK(tsetjmp() == 1);
  pthread_t t[kTakers];
  for (int i = 0; i < kTakers; ++i)
    CHECK(pthread_create(&t[i], nullptr, take_many, reinterpret_cast<void*>(intptr_t{i})) == 0);
  while (g_taken < 40 || __atomic_load_n(&g_descriptors[0][9], __ATOMIC_SEQ_CST) == 0) sleep_ms(1);
  if (phase == 0) {
    phase = 1;
    // Back into the middle of the threads' loop: thread 0's tenth checkpoint. That thread
    // returns from that tsetjmp() again; the others go on from wherever they were then, some
    // waiting for the lock of the shared area. (Not tlongjmp(0): the newest checkpoint may have
    // been taken after this thread got here, and would hold it about to go back again.)
    CHECK(tlongjmp(g_descriptors[0][9]) == 0 && false);
  }
  for (auto& th : t) CHECK(pthread_join(th, nullptr) == 0);
  std::vector<int> all;
  for (auto& row : g_descriptors)
    for (int d : row) all.push_back(d);
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());  // each handed out once
  CHECK(all.front() >= 2 && chkpt_status(CKPT_NUMRECOVERIES) == 1);
  CHECK(chkpt_status(CKPT_TO_STATE) == g_descriptors[0][9]);
  pass();
}

// --- signals_during: signals sent while checkpoints are taken are all delivered -----------------
std::atomic<int> g_usr1;
std::atomic<bool> g_stop_sender;

void count_usr1(int) {
  ++g_usr1;
}

void* send_usr1(void* arg) {
  auto* sent = static_cast<std::atomic<int>*>(arg);
  while (!g_stop_sender) {
    kill(getpid(), SIGUSR1);
    ++*sent;
    sleep_ms(1);
  }
  return nullptr;
}

void signals_during() {
  struct sigaction sa {};
  sa.sa_handler = count_usr1;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGUSR1, &sa, nullptr) == 0);
  std::atomic<int> sent = 0;
  pthread_t t;
  CHECK(pthread_create(&t, nullptr, send_usr1, &sent) == 0);
  // At least 40 checkpoints, and as many more as it takes for the sender to have sent a good
  // number during them (fast checkpoints would otherwise be over before it sent 20).
  for (int i = 1; i <= 40 || (sent <= 30 && i <= 2000); ++i) CHECK(tsetjmp() == i);
  g_stop_sender = true;
  CHECK(pthread_join(t, nullptr) == 0);
  // Standard signals do not queue: several sent while one is pending count once. None may be
  // lost for good, though: the last one sent always arrives.
  for (int w = 0; w < 1000 && g_usr1 == 0; ++w) sleep_ms(1);
  int before = g_usr1;
  kill(getpid(), SIGUSR1);
  for (int w = 0; w < 1000 && g_usr1 == before; ++w) sleep_ms(1);
  CHECK(g_usr1 > before && sent > 20 && g_usr1 > sent / 4);
  pass();
}

const Scenario kScenarios[] = {
    {"other_thread", other_thread}, {"threads", threads},
    {"recreate", recreate},         {"eintr", eintr},
    {"concurrent", concurrent},     {"signals_during", signals_during},
};

}  // namespace
}  // namespace rbprog

int main(int argc, char** argv) {
  return rbprog::run_scenario(rbprog::kScenarios, argc, argv);
}
