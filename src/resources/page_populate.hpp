#pragma once
// Populating the memory of a process being restored: the kernel allocates its pages in a few
// injected madvise(MADV_POPULATE_WRITE) calls (much faster here than faulting them in one by one),
// and for big images the pages are copied in while those calls run (populate_while).
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "resources/context.hpp"

namespace ckpt::memory {

// Runs `calls` in the puppet with one stop (the restorer page's batch runner).
Status run_batch(RestoreContext& ctx, std::vector<ptrace::BatchCall>& calls);

// Adds the populate calls for the saved `ranges` ([start, end), ascending) of one mapping: ranges
// closer than 256 KiB are populated together, holes included, which costs at most that much
// memory the process did not have. A failure only loses speed (the copy faults in whatever was
// not populated): the calls are not judged.
void add_populate(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                  std::vector<ptrace::BatchCall>& calls);

// The populate calls parted for an overlap: the big ones (a mapping of 8 MiB or more to
// populate) cut into pieces of whole huge pages that the copy can follow, which must fit one
// batch table of `room` calls; the small ones, often a hundred (a program's libraries, its
// stack), run before in plain batches. No pieces when the big ones are too few to be worth it or
// the calls are not in address order.
struct Parted {
  std::vector<ptrace::BatchCall> before, pieces;
};
Parted part(const std::vector<ptrace::BatchCall>& calls, size_t room);

// How far the populate calls running in the puppet have got, while its pages are copied.
class Populated {
 public:
  using Finished = std::function<Result<size_t>()>;
  // Calls already all done.
  Populated() = default;
  Populated(const std::vector<ptrace::BatchCall>& calls, const Finished& finished);

  // Returns once every call that starts below `end` has finished.
  Status until(uint64_t end);

 private:
  const Finished* finished_ = nullptr;
  std::vector<uint64_t> starts_;
  size_t done_ = 0;
};

// Runs the populate calls, and `copy` while they run where it can: on two CPUs the kernel
// allocates the next pieces in the puppet while the last ones are filled (1 GiB: populate ~150
// ms, copy ~250 ms, engine_bench's raw overlap). Big populates in address order are cut into
// pieces for that; the others run first, then `copy`. `copy` must not inject calls when
// `overlap`, and must wait with until() before it writes.
Status populate_while(RestoreContext& ctx, std::vector<ptrace::BatchCall>& calls, bool overlap,
                      const std::function<Status(Populated&)>& copy);

}  // namespace ckpt::memory
