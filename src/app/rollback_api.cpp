// The C API of include/ckpt/rollback.h, on the program's side.
//
// Every call is one request to the helper through the shared area: the calling thread blocks
// all signals, takes the area's lock, writes its request, wakes the helper and waits on a futex
// for the answer. A checkpoint records the calling thread while it waits in exchange(); after a
// rollback that thread resumes exactly there, finds the helper's "rolled back" answer, and
// returns from tsetjmp() a second time. Nothing here allocates, so tlongjmp() and
// chkpt_status() are safe in signal handlers.
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>

#include "app/rollback_client.hpp"
#include "ckpt/rollback.h"

namespace ckpt::rollback {
namespace {

thread_local __attribute__((tls_model("initial-exec"))) char t_error[512];

Client g_client;
std::atomic<bool> g_ready{false};
std::mutex g_init_mu;

int fail(int err, const char* msg) {
  std::strncpy(t_error, msg, sizeof t_error - 1);
  t_error[sizeof t_error - 1] = '\0';
  errno = err;
  return -1;
}

pid_t my_tid() {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

uint64_t block_all_signals() {
  uint64_t all = ~uint64_t{0}, old = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(uint64_t));
  return old;
}

void set_signal_mask(uint64_t mask) {
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, nullptr, sizeof(uint64_t));
}

std::atomic_ref<uint32_t> word(uint32_t& w) {
  return std::atomic_ref<uint32_t>(w);
}

// The client of this process if it has one, without starting anything.
Client* ready_client() {
  if (!g_ready.load(std::memory_order_acquire)) return nullptr;
  if (g_client.pid != ::getpid() || g_client.dead) return nullptr;
  return &g_client;
}

// The client, starting the helper on first use (and again in a forked child, or after the
// helper died: the checkpoints it held are lost then).
Client* ensure_client() {
  if (Client* c = ready_client()) return c;
  std::lock_guard lock(g_init_mu);
  if (Client* c = ready_client()) return c;
  if (g_ready.load()) {
    g_ready.store(false);
    discard_client(g_client);
  }
  auto c = spawn_helper();
  if (!c) {
    fail(c.error().errnum > 0 ? c.error().errnum : EIO, c.error().message.c_str());
    return nullptr;
  }
  g_client = *c;
  g_ready.store(true, std::memory_order_release);
  return &g_client;
}

// The lock of the shared area; returns the caller's tid, or 0 with errno set. A thread that
// died holding it (killed in the middle of a call) gives it up by being gone. The tid is asked
// afresh each round: a rollback may give a thread caught waiting here a new tid.
pid_t take_lock(Client& c) {
  auto lock = word(c.rw->lock);
  const timespec tick{0, 50'000'000};
  for (;;) {
    pid_t tid = my_tid();
    uint32_t owner = 0;
    if (lock.compare_exchange_strong(owner, static_cast<uint32_t>(tid))) return tid;
    if (owner == static_cast<uint32_t>(tid)) {
      errno = EDEADLK;
      return 0;
    }
    if (::syscall(SYS_tgkill, c.pid, owner, 0) < 0 && errno == ESRCH) {
      if (lock.compare_exchange_strong(owner, static_cast<uint32_t>(tid))) return tid;
      continue;
    }
    ::syscall(SYS_futex, &c.rw->lock, FUTEX_WAIT, owner, &tick, nullptr, 0);
    if (helper_gone(c)) {
      errno = EIO;
      return 0;
    }
  }
}

void drop_lock(Client& c) {
  word(c.rw->lock).store(0);
  ::syscall(SYS_futex, &c.rw->lock, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Snapshot processes the helper killed are our children: reap them (without __WALL nobody
// else would).
void reap_snapshots(Client& c) {
  const SharedStatus& s = c.ro->status;
  uint64_t count = std::atomic_ref<const uint64_t>(s.reap_count).load();
  uint64_t& done = c.rw->reaped;
  if (count - done > kReapRing) done = count - kReapRing;
  while (done < count) {
    siginfo_t si{};
    pid_t pid = s.reap[done % kReapRing];
    int r = ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | __WALL);
    if (r == 0 && si.si_pid == 0) break;  // not dead yet: next time
    ++done;
  }
}

void read_handlers(Request& r) {
  for (int sig = 1; sig <= kNsig; ++sig)
    ::syscall(SYS_rt_sigaction, sig, nullptr, &r.handlers[sig - 1], sizeof(uint64_t));
  r.handlers_valid = 1;
}

void crash_loop_report(Client& c) {
  auto fn = reinterpret_cast<ckpt_crashloop_fn>(c.rw->crashloop_fn);
  const SharedStatus& s = c.ro->status;
  if (fn && c.rw->crashloop_threshold > 0 && s.loopcount >= c.rw->crashloop_threshold)
    fn(s.to_state, s.sigtype, s.loopcount, reinterpret_cast<void*>(c.rw->crashloop_arg));
}

// One request. `fill` completes the request while the lock is held.
template <typename Fill>
int call(Client& c, Op op, Fill fill) {
  uint64_t old_mask = block_all_signals();
  pid_t tid = take_lock(c);
  if (!tid) {
    int err = errno;
    set_signal_mask(old_mask);
    return fail(err, "could not take the rollback lock");
  }
  Request& req = c.rw->req;
  req = Request{};
  req.op = static_cast<uint32_t>(op);
  req.tid = tid;
  req.old_mask = old_mask;
  fill(req);
  // A rollback resumes the thread that took the checkpoint inside exchange(), with this frame.
  bool answered = exchange(c);
  Reply rep = c.rw->rep;
  drop_lock(c);
  if (answered) reap_snapshots(c);
  set_signal_mask(old_mask);
  if (!answered) {
    c.dead = true;
    return fail(EIO, "the rollback helper is gone (its checkpoints are lost)");
  }
  if (rep.answer == static_cast<uint32_t>(Answer::rolled_back)) crash_loop_report(c);
  if (rep.result < 0) return fail(rep.err, rep.message);
  t_error[0] = '\0';
  return rep.result;
}

template <typename Fill>
int call_started(Op op, Fill fill) {
  Client* c = ensure_client();
  if (!c) return -1;
  return call(*c, op, fill);
}

int status_value(const SharedStatus& s, int type) {
  switch (type) {
    case CHKPT_RECOVERED:
      return s.recovered;
    case CKPT_FROM_STATE:
      return s.recovered ? s.from_state : fail(EINVAL, "no rollback has happened");
    case CKPT_TO_STATE:
      return s.recovered ? s.to_state : fail(EINVAL, "no rollback has happened");
    case CKPT_SIGTYPE:
      return s.sigtype;
    case CKPT_NUMCHKPTS:
      return s.numchkpts;
    case CKPT_NUMRECOVERIES:
      return s.numrecoveries;
    case CKPT_ROLLEDBACK:
      return s.rolled_back;
    case CKPT_LOOPCOUNT:
      return s.loopcount;
    case CKPT_NUMKEPT:
      return s.kept;
    case CKPT_CURSTATE:
      return s.current_state;
    default:
      return fail(EINVAL, "unknown chkpt_status type");
  }
}

}  // namespace
}  // namespace ckpt::rollback

using namespace ckpt::rollback;

extern "C" int ckpt_tsetjmp(void) {
  return call_started(Op::checkpoint, [](Request& r) {
    read_handlers(r);
    r.altstack_valid = ::sigaltstack(nullptr, &r.altstack) == 0;
  });
}

extern "C" int ckpt_tlongjmp(int n) {
  if (n < 0) return fail(EINVAL, "tlongjmp: negative checkpoint descriptor");
  Client* c = ready_client();
  if (!c) return fail(EINVAL, "tlongjmp: no checkpoint has been taken");
  // 0 is the newest checkpoint at this call. Named now, before waiting for the lock: another
  // thread may take a checkpoint meanwhile, which then holds this thread waiting here, and going
  // back to it would bring this request back again and again.
  if (n == 0) n = std::atomic_ref<const int32_t>(c->ro->status.newest).load();
  if (n == 0) return fail(EINVAL, "tlongjmp: no checkpoint is kept");
  return call(*c, Op::rollback, [n](Request& r) {
    r.arg = n;
    read_handlers(r);
  });
}

extern "C" int ckpt_persist(void* addr, size_t size) {
  if (!addr) return fail(EINVAL, "persist: NULL address");
  return call_started(Op::persist, [&](Request& r) {
    r.addr = reinterpret_cast<uint64_t>(addr);
    r.size = size;
  });
}

extern "C" int ckpt_cache(int dir, void* addr, size_t size) {
  if (dir != CKPT_CACHE_IN && dir != CKPT_CACHE_OUT)
    return fail(EINVAL, "cache: direction is neither IN nor OUT");
  if (!addr) return fail(EINVAL, "cache: NULL address");
  return call_started(dir == CKPT_CACHE_IN ? Op::cache_in : Op::cache_out, [&](Request& r) {
    r.addr = reinterpret_cast<uint64_t>(addr);
    r.size = size;
  });
}

extern "C" int ckpt_chkpt_status(int type) {
  Client* c = ready_client();
  SharedStatus s = c ? c->ro->status : SharedStatus{};
  return status_value(s, type);
}

extern "C" int ckpt_set_crashloop_handler(ckpt_crashloop_fn fn, int threshold, void* arg) {
  if (fn && threshold < 1) return fail(EINVAL, "crash-loop threshold must be at least 1");
  Client* c = ensure_client();
  if (!c) return -1;
  c->rw->crashloop_threshold = fn ? threshold : 0;
  c->rw->crashloop_arg = reinterpret_cast<uint64_t>(arg);
  c->rw->crashloop_fn = reinterpret_cast<uint64_t>(fn);
  return 0;
}

extern "C" int ckpt_pin(int n) {
  return call_started(Op::pin, [n](Request& r) { r.arg = n; });
}

extern "C" int ckpt_unpin(int n) {
  return call_started(Op::unpin, [n](Request& r) { r.arg = n; });
}

extern "C" int ckpt_rollback_set_keep(int n) {
  return call_started(Op::set_keep, [n](Request& r) { r.arg = n; });
}

extern "C" const char* ckpt_rollback_error(void) {
  return t_error;
}
