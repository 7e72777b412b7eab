#pragma once
// Progress of a long dump or restore on a terminal: one line redrawn in place with the bytes
// done, the total, the rate and the time left. Nothing at all when stderr is not a terminal, and
// nothing for an operation that ends within the first half second (no flicker for small ones).
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/units.hpp"

namespace ckpt::cli {

// The text of one progress line, without the carriage return: e.g.
// "dump   12.0 MiB / 48.0 MiB  25%  96.0 MiB/s  ETA 0.4s" ("?" parts while the total is unknown).
std::string format_progress(std::string_view what, uint64_t done, uint64_t total,
                            double elapsed_seconds);
using ckpt::human_bytes;  // common/units.hpp
// "0.4s", "12s", "3m05s", "2h07m".
std::string human_duration(double seconds);

class Progress {
 public:
  using Clock = std::chrono::steady_clock;
  // Draws on `fd` only if it is a terminal (or `force`, for tests).
  Progress(std::string what, int fd, bool force = false);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() { finish(); }

  // The engine's callback; redraws at most ten times a second.
  void update(uint64_t done, uint64_t total);
  // Clears the line if one was drawn.
  void finish();
  // A callback for DumpOptions/RestoreOptions::progress; empty when nothing is drawn. The
  // Progress must outlive it.
  std::function<void(uint64_t, uint64_t)> callback();

 private:
  std::string what_;
  int fd_;
  bool active_;
  bool drawn_ = false;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_draw_{};
};

}  // namespace ckpt::cli
