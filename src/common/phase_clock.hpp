#pragma once
// Where the milliseconds of a dump's frozen window or of a restore go: each step's time since the
// previous mark, logged at debug level in the caller's module, so that `--log dump=debug` (or
// restore=debug) gives the breakdown without a profiler and without cost when the level is off.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

#include "common/log.hpp"

namespace ckpt {

class PhaseClock {
 public:
  using Clock = std::chrono::steady_clock;
  // A dump's frozen window of `pid`.
  explicit PhaseClock(pid_t pid) : PhaseClock("dump", fmt::format("pid {}: frozen", pid)) {}
  PhaseClock(std::string_view module, std::string what)
      : module_(module), what_(std::move(what)), last_(Clock::now()) {}

  void mark(std::string_view phase) {
    if (!log::enabled(module_, log::Level::debug)) return;
    auto now = Clock::now();
    log::debug(module_, "{}: {} in {:.2f} ms", what_, phase,
               std::chrono::duration<double, std::milli>(now - last_).count());
    last_ = now;
  }

 private:
  std::string_view module_;
  std::string what_;
  Clock::time_point last_;
};

}  // namespace ckpt
