#pragma once
// CpuPin: a thread kept on one CPU while ckpt works with it, its own CPU mask given back when the
// pin ends.
//
// Why: every injected call and every ptrace stop is a round trip between a tracer thread and a
// tracee. Left to the scheduler, a tracee woken by its tracer goes to an idle CPU (the tracer is
// about to wait), and the tracer, woken by the tracee's stop, to the other one: on a VM each such
// wake-up of an idle virtual CPU costs 0.1-1 ms. Tracer and tracees pinned to one CPU hand it
// over to each other instead (bench/freeze_bench, bench/tree_bench: docs/benchmarks.md).
//
// Pinning only saves time: a thread whose mask leaves that CPU out, or that refuses a new mask
// (SCHED_DEADLINE), or that is gone, gets a pin that does nothing.
#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace ckpt {

class CpuPinLedger;

class CpuPin {
 public:
  CpuPin() = default;
  // `cpu` < 0 pins nothing. A pin is noted in the ledger in use, if any (CpuPinLedger), unless
  // `own`: ckpt's own threads end with the process that pinned them. `cpu` must be in `within`
  // (a mask as before() gives it), by default the thread's mask now: a pinned thread can be moved
  // to another CPU of the mask it had before its pin.
  static CpuPin pin(pid_t tid, int cpu, bool own = false,
                    const std::vector<uint64_t>* within = nullptr);
  ~CpuPin() { unpin(); }
  CpuPin(CpuPin&& o) noexcept;
  CpuPin& operator=(CpuPin&& o) noexcept;
  CpuPin(const CpuPin&) = delete;
  CpuPin& operator=(const CpuPin&) = delete;

  bool pinned() const { return tid_ != 0; }
  // The mask the thread had before (words of 64 CPUs, as sched_getaffinity gives them).
  const std::vector<uint64_t>& before() const { return before_; }
  // Gives the thread its mask back now.
  void unpin();
  // Leaves the thread pinned, for whoever sets its mask next; returns the mask it had.
  std::vector<uint64_t> release();

 private:
  void forget();

  pid_t tid_ = 0;
  std::vector<uint64_t> before_;
  long slot_ = -1;  // in the ledger in use, if any
};

// Where a dumper notes its pins, in memory its parent shares: a dumper killed in the middle
// (`ckpt run` ending a hung one, a test's kill points) cannot give the program's threads their
// masks back, so its parent does (undo()) once it has reaped it. Made before the fork.
class CpuPinLedger {
 public:
  static CpuPinLedger create();  // a ledger that notes nothing if the mapping fails
  ~CpuPinLedger();
  CpuPinLedger(CpuPinLedger&& o) noexcept;
  CpuPinLedger& operator=(CpuPinLedger&&) = delete;
  CpuPinLedger(const CpuPinLedger&) = delete;

  // In the dumper: every pin from now on is noted here first (and refused when it cannot be).
  void use_here();
  // In the parent, the dumper gone: every thread still noted gets its mask back. How many.
  size_t undo();

  struct Entry;

 private:
  CpuPinLedger() = default;
  Entry* entries_ = nullptr;
};

// The CPU a thread runs on now and may stay on, for a tracer that pins itself; -1 if unknown.
int current_cpu();

// The CPUs the calling thread may run on, in order.
std::vector<int> allowed_cpus();

// CKPT_NO_CPU_PIN=1 turns pinning off (for comparisons in the benches), as does
// turn_off_cpu_pinning() for the rest of this process (a dumper in a PID namespace of the
// program's, whose thread ids its parent's ledger could not use).
bool cpu_pinning_enabled();
void turn_off_cpu_pinning();

}  // namespace ckpt
