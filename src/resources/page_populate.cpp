#include "resources/page_populate.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "arch/arch.hpp"
#include "common/cpu_pin.hpp"
#include "common/log.hpp"

namespace ckpt::memory {
namespace {

// Holes up to this size between saved ranges are populated with them (see add_populate()).
constexpr uint64_t kPopulateGap = 256 << 10;

}  // namespace

Parted part(const std::vector<ptrace::BatchCall>& calls, size_t room) {
  constexpr uint64_t kPiece = 8 << 20;  // the first piece is soon there, and few calls in all
  // From here on it pays (engine_bench, the overlap on two CPUs, stop 47: 64 MiB restored in
  // 35-40 ms against 64-66 ms with the populate first; it was 256 MiB while puppet and restorer
  // took turns on one CPU).
  constexpr uint64_t kWorthIt = 4 * kPiece;
  // Pieces of whole huge pages: madvise() refuses a start that is not page-aligned.
  constexpr uint64_t kAlign = 2 << 20;
  Parted out;
  uint64_t big = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i > 0 && calls[i].args[0] < calls[i - 1].args[0] + calls[i - 1].args[1]) return {calls, {}};
    if (calls[i].args[1] >= kPiece) big += calls[i].args[1];
  }
  if (big < kWorthIt) return {calls, {}};
  uint64_t piece = std::max<uint64_t>(kPiece, big / std::max<size_t>(room / 2, 1));
  piece = (piece + kAlign - 1) / kAlign * kAlign;
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

namespace {

// A populate that failed costs only speed, but all of them failing went unseen once (pieces that
// madvise refused): the log says so.
void report_failed(pid_t pid, const std::vector<ptrace::BatchCall>& calls) {
  size_t failed = 0;
  const ptrace::BatchCall* first = nullptr;
  for (auto& c : calls) {
    if (!c.failed()) continue;
    if (!first) first = &c;
    ++failed;
  }
  if (first)
    log::warn("memory",
              "restore pid {}: {} of {} populate calls failed (the first at {:#x}+{:#x}: {}); "
              "the copy faults those pages in, more slowly",
              pid, failed, calls.size(), first->args[0], first->args[1],
              std::strerror(static_cast<int>(-first->ret)));
}

// The puppet runs on its builder's CPU (CpuPin: each injected call is a round trip); while it
// populates and the builder copies, the two must not share a CPU, or nothing overlaps (1 GiB:
// populate 470 ms and copy 370 ms, one after the other). Left to the scheduler, the builder
// follows the puppet it wakes; so each gets a CPU of its own. Nothing to do on one CPU.
struct Apart {
  CpuPin builder, puppet;
};

Apart apart(const RestoreContext& ctx) {
  int here = current_cpu();
  // The builder may be pinned itself: the CPUs to choose from are those the puppet had.
  const auto& mask = ctx.mask_before_pin;
  for (int cpu = 0; cpu < static_cast<int>(mask.size() * 64); ++cpu) {
    if (cpu == here || !(mask[cpu / 64] >> (cpu % 64) & 1)) continue;
    CpuPin moved = CpuPin::pin(ctx.pid, cpu, true, &ctx.mask_before_pin);
    if (moved.pinned()) {
      log::debug("memory", "restore pid {}: populating on CPU {}, copying on CPU {}", ctx.pid, cpu,
                 here);
      return {CpuPin::pin(::gettid(), here, true), std::move(moved)};
    }
  }
  log::debug("memory", "restore pid {}: no other CPU to populate on; left to the scheduler",
             ctx.pid);
  return {};
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
  report_failed(ctx.pid, parted.before);
  std::vector<ptrace::BatchCall>& pieces = parted.pieces;
  if (pieces.empty()) {
    Populated all;
    return copy(all);
  }
  log::debug("memory", "restore pid {}: populating in {} pieces while the pages are copied",
             ctx.pid, pieces.size());
  Apart kept_apart = apart(ctx);
  CKPT_TRY(ctx.main_remote->call_batch_while(ctx.trampoline + arch::kBatchRunnerOffset,
                                             ctx.scratch.addr, ctx.scratch.size, pieces,
                                             [&](const Populated::Finished& finished) {
                                               Populated ready(pieces, finished);
                                               return copy(ready);
                                             }));
  report_failed(ctx.pid, pieces);
  return {};
}

}  // namespace ckpt::memory
