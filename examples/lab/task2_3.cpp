// Lab task 2.3: `task2-3 OUT I` runs the worker and sends it SIGUSR1 every I seconds; the worker
// checkpoints its whole process with ckpt_dump() in response. After a crash the monitor restores
// the newest checkpoint with ckpt_restore_child() (from scratch while there is none).
#include "dump_monitor.hpp"

int main(int argc, char** argv) {
  return ckpt::lab::run_dump_monitor(argc, argv, ckpt::lab::DumpTrigger::monitor_sigusr1);
}
