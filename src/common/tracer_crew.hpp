#pragma once
// TracerCrew: threads that work on several processes at once. ptrace ties a tracee to the thread
// that attached it (every request must come from that thread, and the tracee is let go or killed,
// with PTRACE_O_EXITKILL, when that thread ends), so everything done to one process, from its
// attachment to its release, goes to the same member, chosen by index: member 0 is the calling
// thread itself, the others are threads the crew owns until it is destroyed.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/cpu_pin.hpp"
#include "common/result.hpp"

namespace ckpt {

class TracerCrew {
 public:
  // `members` counts the calling thread: 1 makes no thread at all.
  explicit TracerCrew(size_t members);
  ~TracerCrew();  // lets the queued jobs run, then ends the threads
  TracerCrew(const TracerCrew&) = delete;
  TracerCrew& operator=(const TracerCrew&) = delete;

  size_t size() const { return threads_.size() + 1; }
  // Runs `job` on member `k` after the jobs given to it before; member 0 runs it at once, here.
  std::future<Status> post(size_t k, std::function<Status()> job);
  // Runs `job` on member `k` and waits for it.
  Status run(size_t k, std::function<Status()> job) { return post(k, std::move(job)).get(); }
  // Runs job(x) for each x of `items` on member x mod size(), the members at once, each in the
  // order of `items`, and waits for all. With `stop`, a failure spares the jobs after it in
  // `items` (they read "not reached"), so the first failure in that order is always run. The
  // results, in the order of `items`.
  std::vector<Status> share(const std::vector<size_t>& items,
                            const std::function<Status(size_t)>& job, bool stop = true);

  // Runs job(x) for each x of `items` on member x mod size(), one after the other in the order
  // of `items` (for what must be numbered in that order), and waits for all. The first failure
  // ends it: the jobs after it read "not reached". The results, in the order of `items`.
  std::vector<Status> in_turn(const std::vector<size_t>& items,
                              const std::function<Status(size_t)>& job);

  // Pins every member to a CPU of its own until the returned pins end: the calling thread
  // (member 0) to the CPU it runs on, the others to the next CPUs it may use. A tracee pinned to
  // its member's CPU, cpu(k), then hands that CPU back and forth with it (cpu_pin.hpp). Nothing
  // is pinned with CKPT_NO_CPU_PIN=1.
  std::vector<CpuPin> pin_members();
  // Member k's CPU while pinned; -1 otherwise.
  int cpu(size_t k) const { return k < cpus_.size() ? cpus_[k] : -1; }

  // How many members a crew for `work` processes gets: one per CPU this process may use, or
  // CKPT_TRACER_THREADS of them (1 for bench/tree_bench's comparison, 2 for tests that must see
  // two on any machine); never more than `work` or kMostMembers.
  static size_t members_for(size_t work);
  static constexpr size_t kMostMembers = 16;

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable ready;
    std::deque<std::packaged_task<Status()>> jobs;
    bool closing = false;
  };
  static void serve(Queue& q);
  // Runs loop(k) on every member k that has an item of `items` (x mod size()), all at once, and
  // waits for them all.
  void on_busy_members(const std::vector<size_t>& items, const std::function<Status(size_t)>& loop);

  std::vector<std::unique_ptr<Queue>> queues_;  // [k - 1] for member k
  std::vector<std::thread> threads_;
  std::vector<int> cpus_;  // [k] for member k, while pinned
};

}  // namespace ckpt
