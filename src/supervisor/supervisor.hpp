#pragma once
// `ckpt run`: runs a program as a child, checkpoints it periodically and on request with the
// transparent engine, and recovers it from the newest usable generation when it crashes.
// Behaviour and messages: docs/supervisor.md.
#include <filesystem>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "supervisor/policy.hpp"

namespace ckpt::supervisor {

struct RunOptions {
  std::vector<std::string> program;  // argv; argv[0] is searched in $PATH
  std::filesystem::path dir;         // the store; empty: default_store_dir(program[0])
  double interval = 60;              // seconds between checkpoints; 0: only on request
  size_t keep = 3;                   // generations kept
  PolicyConfig policy;
  bool quiet = false;
  bool resume = false;  // start from the store's newest valid generation, if any
  bool accept_changed_files = false;
  bool compress = false;
  // Checkpoints store only the pages changed since the one before, but every full_every-th is
  // full (which bounds the chains restore reads and retention keeps).
  bool incremental = false;
  size_t full_every = 10;
  // With incremental: the pages the program writes are tracked between checkpoints, so that a
  // checkpoint reads only those (resources/write_tracking.hpp); off, every page is read and
  // hashed. Off is for programs that register their memory with a userfaultfd of their own.
  bool write_tracking = true;
  // Restores start the program at once and fill its memory while it runs (restore --lazy).
  bool lazy = false;
  // Checkpoints without a tracker copy the memory while the program runs and freeze it only to
  // read what it wrote meanwhile (DumpOptions::pre_copy).
  bool pre_copy = false;
};

// $XDG_STATE_HOME/ckpt/NAME, else ~/.local/state/ckpt/NAME, NAME being the program's file name.
Result<std::filesystem::path> default_store_dir(const std::string& program);

// Runs the program to its end. Returns the supervisor's exit code: the program's (0, or its exit
// code or 128+signal when that is not a crash or after giving up), 126/127 when the program cannot
// be executed, 1 when the store cannot be used. Errors are printed, one line each.
int run_supervised(RunOptions opts);

}  // namespace ckpt::supervisor
