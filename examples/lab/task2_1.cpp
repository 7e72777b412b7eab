// Lab task 2.1: `task2-1 OUT` runs the worker and restarts it from scratch after every crash.
#include <cstdio>

#include "monitor.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  ckpt::lab::MonitorConfig config;
  config.worker = ckpt::lab::find_worker();
  config.first_args = {argv[1]};
  config.restart_args = {argv[1]};
  return ckpt::lab::run_monitor(config);
}
