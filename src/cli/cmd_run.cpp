// `ckpt run`, `ckpt checkpoint` and `ckpt status`: the supervisor on the command line.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "cli/options.hpp"
#include "supervisor/run_state.hpp"
#include "supervisor/supervisor.hpp"

namespace ckpt::cli {
namespace {

namespace fs = std::filesystem;
using namespace ckpt::supervisor;

struct RunArgs {
  std::vector<std::string> program;
  std::string dir;
  double interval = 60;
  size_t keep = 3;
  std::string restart_on = "any";
  double min_uptime = 2;
  int max_retries = 2;
  int max_restarts = 100;
  bool quiet = false;
  bool resume = false;
  bool accept_changed_files = false;
  bool compress = false;
  bool incremental = false;
  size_t full_every = 10;
  bool no_write_tracking = false;
  bool lazy = false;
  bool pre_copy = false;
};

int run_run(const RunArgs& a) {
  auto rule = RestartRule::parse(a.restart_on);
  if (!rule.ok()) {
    print_error(rule.error().message);
    return kExitUsage;
  }
  RunOptions o;
  o.program = a.program;
  o.dir = a.dir;
  o.interval = a.interval;
  o.keep = a.keep;
  o.policy.rule = *rule;
  o.policy.min_uptime = Seconds(a.min_uptime);
  o.policy.max_retries = a.max_retries;
  o.policy.max_restarts = a.max_restarts;
  o.quiet = a.quiet;
  o.resume = a.resume;
  o.accept_changed_files = a.accept_changed_files;
  o.compress = a.compress;
  o.incremental = a.incremental;
  o.full_every = a.full_every;
  o.write_tracking = !a.no_write_tracking;
  o.lazy = a.lazy;
  o.pre_copy = a.pre_copy;
  return run_supervised(std::move(o));
}

// A run named by its store directory or its supervisor's PID; the store, and the supervisor's
// PID if it still runs (0 when the run is gone).
struct Target {
  fs::path dir;
  RunState state;
  bool live = false;
};

Result<Target> find_run(const std::string& name) {
  Target t;
  bool digits = !name.empty() && name.find_first_not_of("0123456789") == std::string::npos;
  std::error_code ec;
  if (digits && !fs::exists(name, ec)) {
    auto pid = parse_pid(name);
    if (!pid) return errorf("'{}' is neither a store directory nor a process id", name);
    CKPT_TRY_ASSIGN(t.dir, store_of_supervisor(*pid));
  } else {
    t.dir = fs::absolute(name);
  }
  CKPT_TRY_ASSIGN(t.state, read_run_state(t.dir));
  t.live = t.state.supervisor_pid > 0 && holds_store_lock(t.state.supervisor_pid, t.dir);
  return t;
}

std::string gone_message(const Target& t) {
  if (t.state.exit_code >= 0)
    return fmt::format("the run of {} is over: it {} with exit code {}", t.dir.string(),
                       t.state.phase, t.state.exit_code);
  return fmt::format("the run of {} is gone: supervisor pid {} ended without saying why",
                     t.dir.string(), t.state.supervisor_pid);
}

int run_checkpoint(const std::string& name, double timeout) {
  auto t = find_run(name);
  if (!t.ok()) {
    print_error(t.error().message);
    return kExitFailed;
  }
  if (!t->live) {
    print_error(gone_message(*t));
    return kExitFailed;
  }
  uint64_t before = t->state.requests_served;
  if (::kill(t->state.supervisor_pid, SIGUSR1) < 0) {
    print_error(sys_error(fmt::format("signal pid {}", t->state.supervisor_pid)).message);
    return kExitFailed;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto st = read_run_state(t->dir);
    if (st.ok() && st->requests_served > before) {
      if (!st->last_request_ok) {
        print_error(fmt::format("checkpoint failed: {}", st->last_request_message));
        return kExitFailed;
      }
      fmt::print("{}\n", st->last_request_message);
      return kExitOk;
    }
    if (!holds_store_lock(t->state.supervisor_pid, t->dir)) {
      print_error(fmt::format("supervisor pid {} ended before answering", t->state.supervisor_pid));
      return kExitFailed;
    }
  }
  print_error(fmt::format("no answer from supervisor pid {} within {:.0f}s",
                          t->state.supervisor_pid, timeout));
  return kExitFailed;
}

std::string ago(int64_t unix_ns) {
  double s = static_cast<double>(unix_now_ns() - unix_ns) / 1e9;
  if (s < 120) return fmt::format("{:.1f}s", s);
  if (s < 7200) return fmt::format("{:.0f}m {:02.0f}s", std::floor(s / 60), std::fmod(s, 60));
  return fmt::format("{:.0f}h {:02.0f}m", std::floor(s / 3600), std::fmod(s / 60, 60));
}

void print_status_json(const Target& t) {
  nlohmann::json j = to_json(t.state);
  j["store"] = t.dir.string();
  j["live"] = t.live;
  std::fputs((j.dump(2) + "\n").c_str(), stdout);
}

int run_status(const std::string& name, bool as_json) {
  auto t = find_run(name);
  if (!t.ok()) {
    print_error(t.error().message);
    if (as_json)
      std::fputs(
          (nlohmann::json{{"live", false}, {"error", t.error().message}}.dump(2) + "\n").c_str(),
          stdout);
    return kExitFailed;
  }
  if (as_json) {
    print_status_json(*t);
    return t->live ? kExitOk : kExitFailed;
  }
  const RunState& s = t->state;
  fmt::print("store:       {}\n", t->dir.string());
  fmt::print("program:     {}\n", fmt::join(s.program, " "));
  if (t->live) {
    fmt::print("supervisor:  pid {}, {}, up {}\n", s.supervisor_pid, s.phase,
               ago(s.started_unix_ns));
    if (s.child_pid > 0)
      fmt::print("child:       pid {}, up {} (from {})\n", s.child_pid,
                 ago(s.child_started_unix_ns), s.child_origin);
  } else {
    fmt::print("supervisor:  not running ({})\n", gone_message(*t));
  }
  if (s.checkpoints > 0)
    fmt::print("checkpoints: {}, last {} {} ago ({} bytes, frozen {:.1f} ms)\n", s.checkpoints,
               s.last_generation, ago(s.last_checkpoint_unix_ns), s.last_checkpoint_bytes,
               s.last_frozen_ms);
  else
    fmt::print("checkpoints: none yet\n");
  if (!s.last_checkpoint_error.empty())
    fmt::print("last failed checkpoint: {}\n", s.last_checkpoint_error);
  if (s.restarts > 0 || !s.last_crash.empty())
    fmt::print("restarts:    {} (last crash: {}, {} ago)\n", s.restarts, s.last_crash,
               ago(s.last_crash_unix_ns));
  else
    fmt::print("restarts:    0\n");
  return t->live ? kExitOk : kExitFailed;
}

void add_run(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
      "run", "Run a program, checkpoint it periodically and recover it when it crashes");
  cmd->add_option("--dir", a->dir,
                  "Store directory (default: $XDG_STATE_HOME/ckpt/NAME or "
                  "~/.local/state/ckpt/NAME, NAME the program's file name)")
      ->check(non_empty());
  cmd->add_option("--interval", a->interval,
                  "Seconds between checkpoints, fractions allowed; 0: only on request")
      ->default_val(60)
      ->check(finite_range(0, kMaxSeconds));
  cmd->add_option("--keep", a->keep, "Generations to keep")
      ->default_val(3)
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--restart-on", a->restart_on,
                  "Exits that count as crashes: any, exit, exit=N, signal, SIGNAME (comma list)")
      ->default_val("any");
  cmd->add_option("--min-uptime", a->min_uptime,
                  "A crash sooner than this (seconds) after a start counts toward a crash loop")
      ->default_val(2)
      ->check(finite_range(0, kMaxSeconds));
  cmd->add_option("--max-retries", a->max_retries,
                  "Crash-loop restarts from one generation before falling back to an older one")
      ->default_val(2)
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--max-restarts", a->max_restarts, "Restarts in all before giving up")
      ->default_val(100)
      ->check(CLI::Range(0, 1000000000));
  cmd->add_flag("-q,--quiet", a->quiet, "No line per checkpoint, crash and recovery");
  cmd->add_flag("--resume", a->resume,
                "Go on with the run in --dir: take over its program if it still runs (its "
                "supervisor died), else start from the newest valid generation; PROGRAM may then "
                "be left out");
  cmd->add_flag("--accept-changed-files", a->accept_changed_files,
                "Recover even if the program's open files changed size since the checkpoint");
  auto* compress = cmd->add_flag("--compress", a->compress, "Compress checkpoints with zstd");
  cmd->add_flag("--incremental", a->incremental,
                "Checkpoints after a full one store only the pages changed since the one before");
  cmd->add_option("--full-every", a->full_every,
                  "With --incremental: every Nth checkpoint is full (1: all are)")
      ->default_val(10)
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--no-write-tracking", a->no_write_tracking,
                "With --incremental: read and hash every page at each checkpoint instead of "
                "tracking the pages the program writes (for programs with a userfaultfd of their "
                "own)");
  cmd->add_flag("--pre-copy", a->pre_copy,
                "Copy the program's memory while it runs at each checkpoint and freeze it only to "
                "read what it wrote meanwhile (not with --incremental's write tracking, which "
                "knows the unchanged pages already)");
  cmd->add_flag("--lazy", a->lazy,
                "Recover at once: the program runs while its memory is filled from the checkpoint")
      ->excludes(compress);
  cmd->add_option("program", a->program, "PROGRAM ARGS... (after --)");
  cmd->footer(
      "Checkpoint now: 'ckpt checkpoint DIR|PID' or 'kill -USR1 PID'. State: 'ckpt status "
      "DIR|PID'.\n"
      "SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed to the program. Exit code: the program's "
      "(128+N for signal N); 126/127 if it cannot be executed; 1 if the store is unusable.");
  cmd->callback([a, exit_code] { *exit_code = run_run(*a); });
}

void add_checkpoint(CLI::App& app, int* exit_code) {
  auto name = std::make_shared<std::string>();
  auto timeout = std::make_shared<double>(60);
  auto* cmd = app.add_subcommand("checkpoint", "Ask a 'ckpt run' supervisor for a checkpoint now");
  cmd->add_option("run", *name, "The run's store directory or supervisor PID")
      ->required()
      ->check(non_empty());
  cmd->add_option("--timeout", *timeout, "Seconds to wait for the answer")
      ->default_val(60)
      ->check(finite_range(0, kMaxSeconds));
  cmd->callback([name, timeout, exit_code] { *exit_code = run_checkpoint(*name, *timeout); });
}

void add_status(CLI::App& app, int* exit_code) {
  auto name = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("status", "Show the state of a 'ckpt run' supervisor");
  cmd->add_option("run", *name, "The run's store directory or supervisor PID")
      ->required()
      ->check(non_empty());
  cmd->add_flag("--json", *json, "Print the state as JSON (the fields of run.json, store, live)");
  cmd->footer("Exit code 0 while the run is live, 1 when it is over or gone.");
  cmd->callback([name, json, exit_code] { *exit_code = run_status(*name, *json); });
}

const CommandRegistrar run_registrar{{20, add_run}};
const CommandRegistrar checkpoint_registrar{{21, add_checkpoint}};
const CommandRegistrar status_registrar{{22, add_status}};

}  // namespace
}  // namespace ckpt::cli
