#pragma once
// The crash policy of `ckpt run`, free of processes and clocks so that it can be tested alone:
// which exits are crashes, where to recover from (newest generation, then older ones, then a
// fresh start), when a crash loop means giving up, and the history told to the user.
//
// A "life" is the time from a start (fresh or restored from a generation) to the next exit. A
// crash within min_uptime of the start of a life is a quick crash and is charged to the life's
// origin; once an origin has more than max_retries quick crashes it is not used again. The
// generations taken during a life that ended in a quick crash are dropped as well: they were taken
// just before the crash and would otherwise let a crash loop hop from generation to generation.
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::supervisor {

using Seconds = std::chrono::duration<double>;

// How a program ended: an exit code, or the signal that killed it.
struct ExitStatus {
  bool signaled = false;
  int code = 0;  // exit code, or signal number when signaled

  static ExitStatus from_wait(int wait_status);
  // "exit status 3", "killed by SIGSEGV"
  std::string describe() const;
  // What a shell would report: the exit code, or 128 + the signal.
  int shell_code() const { return signaled ? 128 + code : code; }
};

// The exits --restart-on treats as crashes. Exit 0 never is.
class RestartRule {
 public:
  // A comma-separated list of: "any" (every non-zero exit and every signal; the default),
  // "exit" (every non-zero exit code), "exit=N", "signal" (every signal), or a signal by name
  // ("SIGSEGV", "segv") or number.
  static Result<RestartRule> parse(std::string_view spec);
  bool is_crash(const ExitStatus& st) const;

 private:
  bool any_exit_ = false;
  bool any_signal_ = false;
  std::set<int> exits_;
  std::set<int> signals_;
};

struct PolicyConfig {
  RestartRule rule;
  Seconds min_uptime{2.0};
  int max_retries = 2;     // quick crashes per origin before falling back
  int max_restarts = 100;  // restarts in all before giving up
};

// Where the next life starts from: a generation id, or a fresh start when empty.
struct Origin {
  std::optional<std::string> generation;
  bool fresh() const { return !generation; }
  std::string describe() const;
  bool operator==(const Origin&) const = default;
};

class CrashPolicy {
 public:
  enum class Action {
    finish,   // not a crash (or a stop the user asked for): end with exit_code
    recover,  // restart: ask next_origin() where from
    give_up,  // too many restarts or every origin failed: end with exit_code, print message
  };
  struct Decision {
    Action action = Action::finish;
    int exit_code = 0;
    std::string message;  // for give_up: the reason and the history
  };

  explicit CrashPolicy(PolicyConfig cfg) : cfg_(std::move(cfg)) {}

  // Generations this run may recover from besides its own (those found with --resume).
  void adopt(const std::string& generation) { known_.insert(generation); }
  // A life begins at time `now` (seconds on any monotonic clock).
  void started(const Origin& origin, Seconds now);
  // A checkpoint of the current life was published.
  void checkpointed(const std::string& generation);
  // The program ended. stop_requested: the user sent it a terminating signal through us.
  Decision exited(const ExitStatus& st, Seconds now, bool stop_requested);
  // The origin to recover from next, given the store's generations newest first, or nothing
  // when every origin including a fresh start is used up.
  std::optional<Origin> next_origin(const std::vector<std::string>& available) const;
  // A generation could not be restored (corrupt, resources missing): never try it again.
  void unusable(const std::string& generation, std::string_view reason);
  // Generations retention removed from the store: nothing about them is kept any more, so that a
  // run that checkpoints every second for months does not grow with them.
  void forget(const std::vector<std::string>& removed);
  // How many generations the policy holds something about (bounded by the store's).
  size_t remembered() const;

  int restarts() const { return restarts_; }
  // `reason` followed by the history, one indented line per event.
  std::string report(std::string_view reason) const;
  // One line per event, oldest first; the newest kMaxHistory only.
  const std::vector<std::string>& history() const { return history_; }
  static constexpr size_t kMaxHistory = 200;

 private:
  bool excluded(const std::string& generation) const;
  void note(std::string line);

  PolicyConfig cfg_;
  std::set<std::string> known_;                // generations of this run
  std::set<std::string> dropped_;              // never to be used again
  std::map<std::string, int> quick_crashes_;   // per origin ("" = fresh)
  std::vector<std::string> life_generations_;  // taken during the current life
  Origin origin_;
  Seconds life_start_{0};
  int lives_ = 0;
  int restarts_ = 0;
  std::vector<std::string> history_;
  size_t history_dropped_ = 0;  // older events no longer in history_
};

}  // namespace ckpt::supervisor
