// Lab tasks 3.1-3.3: `task3 OUT INTERVAL` runs the worker with libckpt checkpoints in the current
// directory (one after an input once INTERVAL seconds have passed since the last) and restarts
// it from the newest valid checkpoint after a crash. Old checkpoints are removed at start.
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>

#include "ckpt/ckpt.hpp"
#include "monitor.hpp"

int main(int argc, char** argv) {
  long interval = -1;
  if (argc == 3) std::from_chars(argv[2], argv[2] + std::strlen(argv[2]), interval);
  if (argc != 3 || interval < 0 || std::to_string(interval) != argv[2]) {
    std::fprintf(stderr, "usage: %s OUT INTERVAL  (INTERVAL: whole seconds, 0 or more)\n", argv[0]);
    return 2;
  }
  auto state = ckpt::AppState::open();
  if (!state) {
    std::fprintf(stderr, "monitor: %s\n", state.error().message.c_str());
    return 1;
  }
  auto removed = state->clean();
  if (!removed) {
    std::fprintf(stderr, "monitor: %s\n", removed.error().message.c_str());
    return 1;
  }
  if (*removed > 0) std::fprintf(stderr, "monitor: removed %zu old checkpoint files\n", *removed);
  ckpt::lab::MonitorConfig config;
  config.worker = ckpt::lab::find_worker();
  config.first_args = {"--checkpoint-interval", argv[2], argv[1]};
  config.restart_args = {"--checkpoint-interval", argv[2], "--restore", argv[1]};
  return ckpt::lab::run_monitor(config);
}
