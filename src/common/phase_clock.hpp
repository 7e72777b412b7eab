#pragma once
// Where the milliseconds of a dump's frozen window go: each step's time since the previous mark,
// logged at debug level ("dump" module), so that `--log dump=debug` gives the breakdown without
// a profiler and without cost when the level is off.
#include <sys/types.h>

#include <chrono>
#include <string_view>

#include "common/log.hpp"

namespace ckpt {

class PhaseClock {
 public:
  using Clock = std::chrono::steady_clock;
  explicit PhaseClock(pid_t pid) : pid_(pid), last_(Clock::now()) {}

  void mark(std::string_view phase) {
    if (!log::enabled("dump", log::Level::debug)) return;
    auto now = Clock::now();
    log::debug("dump", "pid {}: frozen: {} in {:.2f} ms", pid_, phase,
               std::chrono::duration<double, std::milli>(now - last_).count());
    last_ = now;
  }

 private:
  pid_t pid_;
  Clock::time_point last_;
};

}  // namespace ckpt
