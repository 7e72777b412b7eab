#include "common/tracer_crew.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <system_error>

#include "common/log.hpp"

namespace ckpt {

TracerCrew::TracerCrew(size_t members) {
  for (size_t k = 1; k < members; ++k) {
    queues_.push_back(std::make_unique<Queue>());
    try {
      threads_.emplace_back(serve, std::ref(*queues_.back()));
    } catch (const std::system_error& e) {
      // No thread to be had (a thread or process limit): fewer members do the same work.
      log::info("ptrace", "{} tracer threads of {} wanted: {}", k - 1, members - 1, e.what());
      queues_.pop_back();
      break;
    }
  }
}

TracerCrew::~TracerCrew() {
  for (auto& q : queues_) {
    std::lock_guard lk(q->mu);
    q->closing = true;
    q->ready.notify_one();
  }
  for (auto& t : threads_) t.join();
}

std::future<Status> TracerCrew::post(size_t k, std::function<Status()> job) {
  std::packaged_task<Status()> task(std::move(job));
  auto done = task.get_future();
  if (k == 0) {
    task();
    return done;
  }
  Queue& q = *queues_.at(k - 1);
  std::lock_guard lk(q.mu);
  q.jobs.push_back(std::move(task));
  q.ready.notify_one();
  return done;
}

std::vector<Status> TracerCrew::share(const std::vector<size_t>& items,
                                      const std::function<Status(size_t)>& job, bool stop) {
  std::vector<Status> result(items.size(), Status(make_error("not reached")));
  std::atomic<size_t> first_failed{items.size()};
  auto member_share = [&](size_t k) -> Status {
    for (size_t j = 0; j < items.size(); ++j) {
      if (items[j] % size() != k) continue;
      if (stop && j > first_failed) break;
      result[j] = job(items[j]);
      if (!result[j].ok())
        for (size_t seen = first_failed;
             j < seen && !first_failed.compare_exchange_weak(seen, j);) {
        }
    }
    return {};
  };
  on_busy_members(items, member_share);
  return result;
}

namespace {

// Waits until `turn` reaches `mine`. A member pinned to an idle CPU takes 0.1-1 ms to wake from
// a sleep (cpu_pin.hpp), more than most jobs handed to it in turn: with a CPU of its own, it
// spins for a while first (sharing one, it would take the CPU from the member it waits for).
void wait_turn(std::atomic<size_t>& turn, size_t mine, bool spin) {
  auto spin_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(spin ? 5 : 0);
  for (;;) {
    size_t now = turn.load(std::memory_order_acquire);
    if (now >= mine) return;
    if (std::chrono::steady_clock::now() < spin_until) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    turn.wait(now, std::memory_order_acquire);
  }
}

}  // namespace

std::vector<Status> TracerCrew::in_turn(const std::vector<size_t>& items,
                                        const std::function<Status(size_t)>& job) {
  std::vector<Status> result(items.size(), Status(make_error("not reached")));
  std::atomic<size_t> turn{0};
  std::atomic<bool> failed{false};
  std::vector<int> pinned = cpus_;
  std::sort(pinned.begin(), pinned.end());
  bool own_cpus =
      pinned.size() == size() && std::adjacent_find(pinned.begin(), pinned.end()) == pinned.end();
  auto member_turns = [&](size_t k) -> Status {
    for (size_t j = 0; j < items.size(); ++j) {
      if (items[j] % size() != k) continue;
      wait_turn(turn, j, own_cpus);
      if (!failed.load(std::memory_order_acquire)) {
        result[j] = job(items[j]);
        if (!result[j].ok()) failed.store(true, std::memory_order_release);
      }
      turn.store(j + 1, std::memory_order_release);
      turn.notify_all();
    }
    return {};
  };
  on_busy_members(items, member_turns);
  return result;
}

void TracerCrew::on_busy_members(const std::vector<size_t>& items,
                                 const std::function<Status(size_t)>& loop) {
  std::vector<bool> busy(size(), false);
  for (size_t x : items) busy[x % size()] = true;
  std::vector<std::future<Status>> loops;
  for (size_t k = size(); k-- > 0;)  // member 0, the caller, last: it runs at once
    if (busy[k]) loops.push_back(post(k, [&, k] { return loop(k); }));
  for (auto& l : loops) (void)l.get();
}

void TracerCrew::serve(Queue& q) {
  for (;;) {
    std::packaged_task<Status()> task;
    {
      std::unique_lock lk(q.mu);
      q.ready.wait(lk, [&] { return q.closing || !q.jobs.empty(); });
      if (q.jobs.empty()) return;
      task = std::move(q.jobs.front());
      q.jobs.pop_front();
    }
    task();
  }
}

std::vector<CpuPin> TracerCrew::pin_members() {
  std::vector<CpuPin> pins;
  cpus_.clear();
  int first = current_cpu();
  if (!cpu_pinning_enabled() || first < 0) return pins;
  std::vector<int> others;
  for (int c : allowed_cpus())
    if (c != first) others.push_back(c);
  cpus_.push_back(first);
  for (size_t k = 1; k < size(); ++k)
    cpus_.push_back(others.empty() ? first : others[(k - 1) % others.size()]);
  for (size_t k = 0; k < size(); ++k) {
    pid_t tid = 0;
    (void)run(k, [&tid] {
      tid = ::gettid();
      return Status{};
    });
    pins.push_back(CpuPin::pin(tid, cpus_[k], true));
    log::debug("ptrace", "tracer thread {} on CPU {}{}", tid, cpus_[k],
               pins.back().pinned() ? "" : " (not pinned)");
  }
  return pins;
}

size_t TracerCrew::members_for(size_t work) {
  size_t wanted = 0;
  if (const char* n = std::getenv("CKPT_TRACER_THREADS")) wanted = std::strtoul(n, nullptr, 10);
  if (wanted == 0) {
    cpu_set_t cpus;
    wanted = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  }
  return std::clamp<size_t>(std::min(wanted, work), 1, kMostMembers);
}

}  // namespace ckpt
