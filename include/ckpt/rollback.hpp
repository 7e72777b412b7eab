#pragma once
// C++ wrapper of the rollback API (ckpt/rollback.h): results instead of -1/errno, RAII for pins
// and persistent ranges. Header-only over the C ABI. The paper's macro names stay available.
//
//   ckpt::rollback::Persistent<int> served(0);     // survives every rollback
//   auto d = ckpt::rollback::checkpoint();         // tsetjmp()
//   ckpt::rollback::Pin keep(*d);                  // retention never drops it while `keep` lives
//   if (ckpt::rollback::status().rolled_back) ...  // back here after a rollback
//   ckpt::rollback::rollback(*d);                  // tlongjmp(); returns only on failure
#include <cerrno>
#include <cstddef>
#include <string>
#include <utility>

#include "ckpt/ckpt.hpp"
#include "ckpt/rollback.h"

namespace ckpt::rollback {

namespace detail {
inline AppError last_error() {
  int err = errno;
  return AppError{err, ckpt_rollback_error()};
}
inline AppStatus check(int r) {
  if (r < 0) return last_error();
  return AppOk{};
}
}  // namespace detail

// tsetjmp(): the new checkpoint's descriptor (returned again after a rollback to it).
inline AppResult<int> checkpoint() {
  int d = ckpt_tsetjmp();
  if (d < 0) return detail::last_error();
  return d;
}

// tlongjmp(): rolls back to checkpoint n (0 = the newest); comes back only with the error.
inline AppError rollback(int n = 0) {
  ckpt_tlongjmp(n);
  return detail::last_error();
}

// persist(): the range keeps its contents across rollbacks; unpersist_range() ends that. (Not
// named persist(): the paper's name is a macro of ckpt/rollback.h.)
inline AppStatus persist_range(void* addr, size_t size) {
  return detail::check(ckpt_persist(addr, size));
}
inline AppStatus unpersist_range(void* addr) {
  return detail::check(ckpt_persist(addr, 0));
}

// cache(IN/OUT) for a range or an object.
inline AppStatus cache_in(const void* addr, size_t size) {
  return detail::check(ckpt_cache(CKPT_CACHE_IN, const_cast<void*>(addr), size));
}
inline AppStatus cache_out(void* addr, size_t size) {
  return detail::check(ckpt_cache(CKPT_CACHE_OUT, addr, size));
}
template <typename T>
AppStatus cache_in(const T& obj) {
  return cache_in(&obj, sizeof obj);
}
template <typename T>
AppStatus cache_out(T& obj) {
  return cache_out(&obj, sizeof obj);
}

// chkpt_status() in one read. from/to are 0 before the first rollback.
struct Status {
  bool recovered = false;
  int from_state = 0;
  int to_state = 0;
  int signal = 0;
  int checkpoints = 0;  // descriptors handed out so far
  int recoveries = 0;
  bool rolled_back = false;  // no checkpoint taken since the last rollback
  int loop_count = 0;
  int kept = 0;
  int current_state = 0;
};

inline Status status() {
  Status s;
  s.recovered = ckpt_chkpt_status(CHKPT_RECOVERED) == 1;
  if (s.recovered) {
    s.from_state = ckpt_chkpt_status(CKPT_FROM_STATE);
    s.to_state = ckpt_chkpt_status(CKPT_TO_STATE);
  }
  s.signal = ckpt_chkpt_status(CKPT_SIGTYPE);
  s.checkpoints = ckpt_chkpt_status(CKPT_NUMCHKPTS);
  s.recoveries = ckpt_chkpt_status(CKPT_NUMRECOVERIES);
  s.rolled_back = ckpt_chkpt_status(CKPT_ROLLEDBACK) == 1;
  s.loop_count = ckpt_chkpt_status(CKPT_LOOPCOUNT);
  s.kept = ckpt_chkpt_status(CKPT_NUMKEPT);
  s.current_state = ckpt_chkpt_status(CKPT_CURSTATE);
  return s;
}

inline AppStatus set_keep(int n) {
  return detail::check(ckpt_rollback_set_keep(n));
}

// Crash-loop report: fn(state, signal, count, arg) once `threshold` rollbacks in a row went to
// the same state for the same signal. A plain function: it must survive rollbacks itself.
inline AppStatus on_crash_loop(ckpt_crashloop_fn fn, int threshold, void* arg = nullptr) {
  return detail::check(ckpt_set_crashloop_handler(fn, threshold, arg));
}

// Keeps checkpoint `d` from being dropped by retention while it lives. If pinning fails (d not
// kept, too many pins), ok() is false and the destructor does nothing.
class Pin {
 public:
  explicit Pin(int d) : d_(d), ok_(ckpt_pin(d) == 0) {}
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  Pin(Pin&& o) noexcept : d_(o.d_), ok_(std::exchange(o.ok_, false)) {}
  ~Pin() {
    if (ok_) ckpt_unpin(d_);
  }
  bool ok() const { return ok_; }
  int descriptor() const { return d_; }

 private:
  int d_;
  bool ok_;
};

// A value that keeps its contents across rollbacks for as long as it lives. T must be
// trivially copyable (its bytes are what is kept).
template <typename T>
class Persistent {
 public:
  template <typename... Args>
  explicit Persistent(Args&&... args) : value_(std::forward<Args>(args)...) {
    ok_ = ckpt_persist(&value_, sizeof value_) == 0;
  }
  Persistent(const Persistent&) = delete;
  Persistent& operator=(const Persistent&) = delete;
  ~Persistent() {
    if (ok_) ckpt_persist(&value_, 0);
  }
  bool ok() const { return ok_; }
  T& operator*() { return value_; }
  const T& operator*() const { return value_; }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }

 private:
  T value_;
  bool ok_ = false;
};

}  // namespace ckpt::rollback
