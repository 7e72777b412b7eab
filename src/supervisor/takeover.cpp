#include "supervisor/takeover.hpp"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"

namespace ckpt::supervisor {
namespace {

using Clock = std::chrono::steady_clock;

// When process `start_ticks` (clock ticks after boot) started, in Unix nanoseconds.
int64_t started_unix_ns(uint64_t start_ticks) {
  timespec boot{};
  clock_gettime(CLOCK_BOOTTIME, &boot);
  int64_t since_boot_ns = static_cast<int64_t>(boot.tv_sec) * 1'000'000'000 + boot.tv_nsec;
  auto tick_ns = 1'000'000'000 / ::sysconf(_SC_CLK_TCK);
  int64_t age_ns = since_boot_ns - static_cast<int64_t>(start_ticks) * tick_ns;
  return unix_now_ns() - age_ns;
}

bool alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

}  // namespace

bool program_still_runs(const RunState& previous) {
  if (previous.child_pid <= 0) return false;
  auto st = proc::read_stat(previous.child_pid);
  if (!st.ok() || st->state == 'Z' || st->state == 'X') return false;
  if (previous.child_start_ticks != 0) return st->starttime == previous.child_start_ticks;
  // A restore into child_pid was under way: the process must have started since (ticks are
  // 10 ms; a second of slack for the boot-time arithmetic).
  return started_unix_ns(st->starttime) >= previous.child_started_unix_ns - 1'000'000'000;
}

Result<image::StoreLock> lock_run(const image::Store& store, bool wait_for_dead_owner,
                                  std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto lock = store.lock("ckpt run");
    if (lock.ok() || !wait_for_dead_owner || lock.error().errnum != EWOULDBLOCK) return lock;
    pid_t owner = 0;
    std::ifstream(store.dir() / "lock") >> owner;
    if ((owner > 0 && alive(owner)) || Clock::now() > deadline) return lock;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status wait_untraced(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto st = proc::read_status(pid);
    if (!st.ok()) return st.error().wrap(fmt::format("pid {}", pid));
    if (st->tracer_pid == 0) return {};
    if (Clock::now() > deadline)
      return errorf("pid {} is still traced by pid {} after {} s", pid, st->tracer_pid,
                    std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<pid_t> process_tree(pid_t pid) {
  std::vector<pid_t> out{pid};
  for (size_t i = 0; i < out.size(); ++i)
    if (auto kids = proc::list_children(out[i]); kids.ok())
      out.insert(out.end(), kids->begin(), kids->end());
  return out;
}

Status wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (pid_t pid : pids) {
    while (alive(pid)) {
      if (Clock::now() > deadline)
        return errorf("pid {} is still there {} s after its end", pid,
                      std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return {};
}

}  // namespace ckpt::supervisor
