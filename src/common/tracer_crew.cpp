#include "common/tracer_crew.hpp"

#include <sched.h>

#include <algorithm>
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
