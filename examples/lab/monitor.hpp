#pragma once
// The lab's monitor: runs the worker on the monitor's own stdin/stdout and restarts it whenever
// it exits non-zero or dies by a signal.
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace ckpt::lab {

struct MonitorConfig {
  std::string worker;                     // path of the worker binary
  std::vector<std::string> first_args;    // arguments of the first start
  std::vector<std::string> restart_args;  // arguments after a crash
  // Give up after this many crashes in a row of workers that each ran less than a second: a
  // worker that cannot work at all (unwritable output file) would otherwise restart forever.
  int max_quick_crashes = 100;
  // After a crash, called first to bring the worker back (tasks 2.2, 2.3: ckpt_restore_child());
  // returns the new worker, a child of the monitor, or -1 to start it with restart_args instead.
  std::function<pid_t()> restore;
  // > 0: send the worker SIGUSR1 this often (milliseconds), starting one period after it
  // (re)started (task 2.3).
  long sigusr1_every_ms = 0;
};

// The worker binary: $CKPT_LAB_WORKER, else "lab-worker" next to the running program.
std::string find_worker();

// Returns the monitor's exit status: 0 once the worker exits 0, 1 if it cannot be started or
// keeps crashing immediately.
int run_monitor(const MonitorConfig& config);

}  // namespace ckpt::lab
