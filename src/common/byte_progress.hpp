#pragma once
// Bytes of memory a dump or restore has copied, reported to a progress callback (the CLI draws
// it on a terminal, see cli/progress.hpp). The total may grow while the work goes on: a dump
// learns each process's size only when it reaches it. Processes may be handled on several threads
// at once (TracerCrew): the counts and the callback are taken one at a time.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>

namespace ckpt {

class ByteProgress {
 public:
  using Callback = std::function<void(uint64_t done, uint64_t total)>;
  explicit ByteProgress(Callback fn = {}) : fn_(std::move(fn)) {}

  void expect(uint64_t bytes) {
    std::lock_guard lk(mu_);
    total_ += bytes;
  }
  void advance(uint64_t bytes) {
    std::lock_guard lk(mu_);
    done_ += bytes;
    // An estimate may fall short (pages touched since it was made): never past 100 %.
    if (fn_) fn_(done_, std::max(done_, total_));
  }

 private:
  std::mutex mu_;
  Callback fn_;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

}  // namespace ckpt
