// Lab task 2.2: `task2-2 OUT I` runs the worker, which checkpoints its whole process with
// ckpt_dump() after an input once I seconds have passed since its last checkpoint (0: after
// every input). After a crash the monitor restores
// the newest checkpoint with ckpt_restore_child() (from scratch while there is none).
#include "dump_monitor.hpp"

int main(int argc, char** argv) {
  return ckpt::lab::run_dump_monitor(argc, argv, ckpt::lab::DumpTrigger::worker_interval);
}
