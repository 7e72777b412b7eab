#include "resources/page_populate.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "arch/arch.hpp"
#include "common/log.hpp"

namespace ckpt::memory {
namespace {

// Holes up to this size between saved ranges are populated with them (see add_populate()).
constexpr uint64_t kPopulateGap = 256 << 10;

// The populate calls parted for an overlap: the big ones (a mapping of 32 MiB or more to
// populate) cut into pieces that the copy can follow, which must fit one batch table of `room`
// calls; the small ones, often a hundred (a program's libraries, its stack), run before in plain
// batches. No pieces when the big ones are too few to be worth it or the calls are not in address
// order.
struct Parted {
  std::vector<ptrace::BatchCall> before, pieces;
};

Parted part(const std::vector<ptrace::BatchCall>& calls, size_t room) {
  constexpr uint64_t kPiece = 32 << 20;  // the first piece is soon there, and few calls in all
  // Below this the waits cost about what the overlap saves (64 MiB: 34.5 against 37.1 ms).
  constexpr uint64_t kWorthIt = 8 * kPiece;
  Parted out;
  uint64_t big = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i > 0 && calls[i].args[0] < calls[i - 1].args[0] + calls[i - 1].args[1]) return {calls, {}};
    if (calls[i].args[1] >= kPiece) big += calls[i].args[1];
  }
  if (big < kWorthIt) return {calls, {}};
  uint64_t piece = std::max<uint64_t>(kPiece, big / std::max<size_t>(room / 2, 1));
  for (auto& c : calls) {
    if (c.args[1] < kPiece) {
      out.before.push_back(c);
      continue;
    }
    for (uint64_t at = c.args[0], end = at + c.args[1]; at < end; at += piece) {
      out.pieces.push_back(c);
      out.pieces.back().args[0] = at;
      out.pieces.back().args[1] = std::min(piece, end - at);
    }
  }
  if (out.pieces.size() > room) return {calls, {}};
  return out;
}

}  // namespace

Status run_batch(RestoreContext& ctx, std::vector<ptrace::BatchCall>& calls) {
  if (calls.empty()) return {};
  return ctx.main_remote->call_batch(ctx.trampoline + arch::kBatchRunnerOffset, ctx.scratch.addr,
                                     ctx.scratch.size, calls);
}

void add_populate(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                  std::vector<ptrace::BatchCall>& calls) {
  for (size_t i = 0; i < ranges.size();) {
    auto [s, e] = ranges[i];
    for (++i; i < ranges.size() && ranges[i].first - e <= kPopulateGap; ++i) e = ranges[i].second;
    calls.push_back(
        {"madvise(MADV_POPULATE_WRITE)", SYS_madvise, {s, e - s, MADV_POPULATE_WRITE}, false});
  }
}

Populated::Populated(const std::vector<ptrace::BatchCall>& calls, const Finished& finished)
    : finished_(&finished) {
  for (auto& c : calls) starts_.push_back(c.args[0]);
}

Status Populated::until(uint64_t end) {
  if (!finished_) return {};
  size_t need = std::lower_bound(starts_.begin(), starts_.end(), end) - starts_.begin();
  while (done_ < need) {
    CKPT_TRY_ASSIGN(done_, (*finished_)());
    if (done_ < need) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return {};
}

Status populate_while(RestoreContext& ctx, std::vector<ptrace::BatchCall>& calls, bool overlap,
                      const std::function<Status(Populated&)>& copy) {
  Parted parted = overlap ? part(calls, ptrace::RemoteSyscalls::batch_room(ctx.scratch.size))
                          : Parted{calls, {}};
  CKPT_TRY(run_batch(ctx, parted.before));
  std::vector<ptrace::BatchCall>& pieces = parted.pieces;
  if (pieces.empty()) {
    Populated all;
    return copy(all);
  }
  log::debug("memory", "restore pid {}: populating in {} pieces while the pages are copied",
             ctx.pid, pieces.size());
  return ctx.main_remote->call_batch_while(ctx.trampoline + arch::kBatchRunnerOffset,
                                           ctx.scratch.addr, ctx.scratch.size, pieces,
                                           [&](const Populated::Finished& finished) {
                                             Populated ready(pieces, finished);
                                             return copy(ready);
                                           });
}

}  // namespace ckpt::memory
