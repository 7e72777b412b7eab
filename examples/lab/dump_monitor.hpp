#pragma once
// The monitor of tasks 2.2 and 2.3: the worker checkpoints its whole process with ckpt_dump(),
// and after a crash the monitor brings it back with ckpt_restore_child().

namespace ckpt::lab {

enum class DumpTrigger {
  worker_interval,  // 2.2: the worker checks after each input whether I seconds have passed
  monitor_sigusr1,  // 2.3: the monitor sends SIGUSR1 every I seconds
};

// main() of task2-2 / task2-3: `PROGRAM OUT I`. Returns the exit status.
int run_dump_monitor(int argc, char** argv, DumpTrigger trigger);

}  // namespace ckpt::lab
