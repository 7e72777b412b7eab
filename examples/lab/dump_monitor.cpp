#include "dump_monitor.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "ckpt/ckpt.h"
#include "monitor.hpp"

namespace ckpt::lab {
namespace {

namespace fs = std::filesystem;

// The images directory: $CKPT_LAB_IMAGES, else ./ckpt-images.
fs::path images_dir() {
  const char* e = std::getenv("CKPT_LAB_IMAGES");
  return fs::absolute(e && *e ? fs::path(e) : fs::path("ckpt-images"));
}

// Checkpoints of an earlier run must never be restored into this one. Only a directory that is
// empty or a ckpt store (it has the "CKPT" marker) is emptied, so that a mistyped
// $CKPT_LAB_IMAGES cannot wipe anything else.
bool clean_images(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return true;
  if (!fs::is_directory(dir, ec) || (!fs::is_empty(dir, ec) && !fs::exists(dir / "CKPT", ec))) {
    std::fprintf(stderr, "monitor: %s exists and is not a checkpoint images directory\n",
                 dir.c_str());
    return false;
  }
  fs::remove_all(dir, ec);
  if (ec) {
    std::fprintf(stderr, "monitor: cannot remove old checkpoints in %s: %s\n", dir.c_str(),
                 ec.message().c_str());
    return false;
  }
  return true;
}

// "I": whole seconds for 2.2 (the worker compares whole seconds); for 2.3 also a fraction such
// as 0.5, which must be > 0. Returns milliseconds, or -1.
long parse_interval(const char* s, DumpTrigger trigger) {
  char* end = nullptr;
  errno = 0;
  if (trigger == DumpTrigger::worker_interval) {
    long v = std::strtol(s, &end, 10);
    return (*s && !*end && errno == 0 && v >= 0 && v < 1'000'000) ? v * 1000 : -1;
  }
  double v = std::strtod(s, &end);
  if (!*s || *end || errno != 0 || !std::isfinite(v) || v < 0.001 || v > 1e6) return -1;
  return static_cast<long>(v * 1000);
}

// After a crash: the newest checkpoint, or -1 (start from scratch) when there is none yet.
pid_t restore_worker() {
  int pid = ckpt_restore_child();
  if (pid > 0) {
    std::fprintf(stderr, "monitor: restored the worker from its newest checkpoint as %d\n", pid);
    return pid;
  }
  if (pid == -ENOENT)
    std::fprintf(stderr, "monitor: no checkpoint yet; starting the worker from scratch\n");
  else
    std::fprintf(stderr, "monitor: restore failed (%s); starting the worker from scratch\n",
                 ckpt_last_error());
  return -1;
}

}  // namespace

int run_dump_monitor(int argc, char** argv, DumpTrigger trigger) {
  long every_ms = argc == 3 ? parse_interval(argv[2], trigger) : -1;
  if (every_ms < 0) {
    std::fprintf(stderr, "usage: %s OUT I   (I: %s)\n", argv[0],
                 trigger == DumpTrigger::worker_interval
                     ? "checkpoint interval in whole seconds, 0 = after every input"
                     : "seconds between SIGUSR1s to the worker, > 0, e.g. 2 or 0.5");
    return 2;
  }
  fs::path images = images_dir();
  if (!clean_images(images)) return 1;
  ckpt_init_opts();
  if (ckpt_set_images_dir(images.c_str()) < 0) return 1;
  ckpt_set_shell_job(1);  // the restored worker gets the monitor's stdin/stdout/stderr
  MonitorConfig config;
  config.worker = find_worker();
  config.first_args = {"--images", images.string()};
  if (trigger == DumpTrigger::worker_interval) {
    config.first_args.push_back("--dump-interval");
    config.first_args.push_back(std::to_string(every_ms / 1000));
  } else {
    config.first_args.push_back("--dump-on-sigusr1");
    config.sigusr1_every_ms = every_ms;
  }
  config.first_args.push_back(argv[1]);
  config.restart_args = config.first_args;
  config.restore = restore_worker;
  return run_monitor(config);
}

}  // namespace ckpt::lab
