#pragma once
// The control channel of `ckpt run`: the supervisor keeps DIR/run.json (written atomically) up to
// date, and `ckpt checkpoint` / `ckpt status` read it. A checkpoint request is SIGUSR1 to the
// supervisor; the supervisor counts the requests it served in the file so that the requester
// can wait for its answer. Whether the supervisor still runs is told by its holding the store's
// lock file open (a PID alone could have been reused).
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/result.hpp"

namespace ckpt::supervisor {

inline constexpr const char* kRunStateFile = "run.json";

struct RunState {
  pid_t supervisor_pid = 0;
  std::vector<std::string> program;
  std::string phase = "starting";  // starting, running, recovering, exited, gave up
  int64_t started_unix_ns = 0;     // when the supervisor started
  pid_t child_pid = 0;
  int64_t child_started_unix_ns = 0;  // start of the program's current life
  // The child's start time in /proc/PID/stat (clock ticks after boot): with child_pid, what tells
  // `ckpt run --resume` that a process still running is this program. 0 while a restore into
  // child_pid is under way.
  uint64_t child_start_ticks = 0;
  std::string child_origin;  // "a fresh start" or "generation ID"
  int restarts = 0;
  std::string last_crash;  // "killed by SIGKILL", empty if none
  int64_t last_crash_unix_ns = 0;
  int checkpoints = 0;
  std::string last_generation;
  int64_t last_checkpoint_unix_ns = 0;
  uint64_t last_checkpoint_bytes = 0;
  double last_frozen_ms = 0;
  std::string last_checkpoint_error;  // the newest failed checkpoint's message, cleared on success
  uint64_t requests_served = 0;       // SIGUSR1 requests answered
  bool last_request_ok = false;
  std::string last_request_message;
  int exit_code = -1;  // once the supervisor ended
  int64_t ended_unix_ns = 0;
};

// The state as run.json holds it (also `ckpt status --json`).
nlohmann::json to_json(const RunState& st);
Status write_run_state(const std::filesystem::path& store_dir, const RunState& st);
Result<RunState> read_run_state(const std::filesystem::path& store_dir);

// True if process `pid` holds store_dir's lock file open.
bool holds_store_lock(pid_t pid, const std::filesystem::path& store_dir);
// The store whose lock process `pid` holds: how `ckpt checkpoint PID` finds the run.
Result<std::filesystem::path> store_of_supervisor(pid_t pid);

int64_t unix_now_ns();

}  // namespace ckpt::supervisor
