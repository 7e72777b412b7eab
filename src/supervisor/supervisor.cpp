#include "supervisor/supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>

#include "common/child_process.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "common/units.hpp"
#include "dump/dump.hpp"
#include "image/chain.hpp"
#include "image/store.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"
#include "resources/lazy_pages.hpp"
#include "resources/write_tracking.hpp"
#include "restore/restore.hpp"
#include "restore/user_ns.hpp"
#include "supervisor/own_namespaces.hpp"
#include "supervisor/process.hpp"
#include "supervisor/run_state.hpp"
#include "supervisor/takeover.hpp"

namespace ckpt::supervisor {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class Supervisor {
 public:
  Supervisor(RunOptions opts, image::Store store, image::StoreLock lock, SignalReader signals,
             IntervalTimer timer, std::optional<RunState> previous)
      : opts_(std::move(opts)),
        store_(std::move(store)),
        lock_(std::move(lock)),
        signals_(std::move(signals)),
        timer_(std::move(timer)),
        policy_(opts_.policy),
        previous_(std::move(previous)) {}

  int run(pid_t pid_here);

 private:
  template <typename... Args>
  void tell(fmt::format_string<Args...> f, Args&&... args) {
    if (!opts_.quiet) say(fmt::format(f, std::forward<Args>(args)...));
  }
  Seconds now() const { return Clock::now() - t0_; }
  void save_state();
  std::optional<int> start();
  std::optional<int> recover(Clock::time_point crashed_at);
  // `taking_over`: the program's live connections come back as they were (its adoption's
  // image); after a crash every connection comes back closed, whatever the generation holds.
  Status restore_from(const std::string& generation, bool taking_over = false);
  Status start_fresh();
  Result<bool> take_over();
  Result<std::string> checkpoint_to_adopt(pid_t pid);
  void end_leftovers();
  void began(const Origin& origin, pid_t pid);
  void checkpoint(bool requested);
  void apply_retention();
  void settle_lazy();
  std::optional<int> handle_signals();
  std::optional<int> reap();
  std::optional<int> child_ended(const ExitStatus& st);
  std::vector<std::string> available_generations();
  int finish(int code, std::string phase);

  RunOptions opts_;
  image::Store store_;
  image::StoreLock lock_;
  SignalReader signals_;
  IntervalTimer timer_;
  CrashPolicy policy_;
  RunState state_;
  Clock::time_point t0_ = Clock::now();
  pid_t child_ = 0;
  bool stop_requested_ = false;
  bool hup_forwarded_ = false;
  std::set<std::string> reported_problems_;
  size_t incremental_in_row_ = 0;     // incremental checkpoints since the last full one
  std::optional<RunState> previous_;  // the store's run state from before this run (--resume)
  // The page server of a lazy restore whose memory is still arriving, and its generation.
  std::shared_ptr<lazy_pages::Server> lazy_;
  std::string lazy_generation_;
  // Which pages the program wrote between checkpoints (--incremental): kept from one checkpoint
  // to the next, ended when the program is started or restored again.
  write_tracking::Tracker tracker_;
};

void Supervisor::save_state() {
  // A full disk must not stop the supervisor: the state file is for `ckpt status` only.
  auto st = write_run_state(store_.dir(), state_);
  if (!st.ok()) log::warn("supervisor", "{}", st.error().message);
}

void Supervisor::began(const Origin& origin, pid_t pid) {
  child_ = pid;
  tracker_.clear();
  policy_.started(origin, now());
  state_.phase = "running";
  state_.child_pid = pid_outside(pid);
  state_.child_started_unix_ns = unix_now_ns();
  auto stat = proc::read_stat(pid);
  state_.child_start_ticks = stat.ok() ? stat->starttime : 0;
  state_.child_origin = origin.describe();
  state_.restarts = policy_.restarts();
  save_state();
}

Status Supervisor::start_fresh() {
  CKPT_TRY_ASSIGN(pid_t pid, spawn_program(opts_.program));
  began(Origin{}, pid);
  return {};
}

Status Supervisor::restore_from(const std::string& generation, bool taking_over) {
  // Said before the restore: if we die in the middle of it, `--resume` knows which PID to look
  // at for a program that came back anyway.
  if (auto gen = store_.find(generation); gen.ok() && gen->labels.count("pid")) {
    state_.child_pid = static_cast<pid_t>(std::atoi(gen->labels.at("pid").c_str()));
    state_.child_start_ticks = 0;
    state_.child_started_unix_ns = unix_now_ns();
    save_state();
  }
  RestoreOptions ro;
  ro.generation = generation;
  ro.shell_job = true;
  ro.tcp_close = !taking_over;
  ro.accept_changed_files = opts_.accept_changed_files;
  ro.lazy = opts_.lazy;
  CKPT_TRY_ASSIGN(RestoreResult r, restore_process(store_, ro));
  began(Origin{generation}, r.pid);
  lazy_ = std::move(r.lazy);
  lazy_generation_ = generation;
  return {};
}

// Ends the lazy restore under way, waiting for its last pages. A damaged page made the server
// kill the program: the generation is never tried again, and the program's end, reaped next, is
// recovered from another origin.
void Supervisor::settle_lazy() {
  if (!lazy_) return;
  Status st = lazy_->wait();
  if (st.ok()) tell("memory of pid {} {}", state_.child_pid, lazy_pages::describe(lazy_->stats()));
  if (!st.ok()) {
    say(fmt::format("generation {} failed while its memory arrived, the program was killed: {}",
                    lazy_generation_, st.error().message));
    policy_.unusable(lazy_generation_, st.error().message);
  }
  lazy_.reset();
}

std::vector<std::string> Supervisor::available_generations() {
  std::vector<image::Problem> problems;
  std::vector<std::string> ids;
  for (auto& g : store_.list(&problems)) ids.push_back(g.id);
  for (auto& p : problems) {
    if (reported_problems_.insert(p.id).second)
      say(fmt::format("skipping generation {}: {}", p.id, p.message));
  }
  return ids;
}

std::optional<int> Supervisor::start() {
  if (opts_.resume) {
    for (auto& id : available_generations()) policy_.adopt(id);
    auto took = take_over();
    if (!took.ok()) {
      say(took.error().message);
      return finish(1, "exited");
    }
    if (*took) return std::nullopt;
    return recover(Clock::now());
  }
  auto st = start_fresh();
  if (!st.ok()) {
    say(st.error().message);
    return finish(st.error().errnum == ENOENT ? 127 : 126, "exited");
  }
  tell("started {} (pid {}), checkpoints in {}", opts_.program[0], state_.child_pid,
       store_.dir().string());
  return std::nullopt;
}

// The program of a run whose supervisor died may still run, orphaned: it is checkpointed (which
// ends it), then restored as our child. Nothing is lost, and it is supervised again. False when
// no such program runs or its restore failed (recovery goes on from the store); an error when it
// could not be checkpointed (it is left running as it was).
Result<bool> Supervisor::take_over() {
  // A run in namespaces of its own took its program along when it ended.
  if (in_own_namespaces()) return false;
  if (!previous_ || !program_still_runs(*previous_)) return false;
  pid_t pid = previous_->child_pid;
  tell("taking over pid {}, left running by supervisor pid {}", pid, previous_->supervisor_pid);
  auto gen = checkpoint_to_adopt(pid);
  if (!gen.ok())
    return gen.error().wrap(fmt::format(
        "cannot take over pid {} (it keeps running unsupervised; end it to resume from the "
        "store)",
        pid));
  Status st = restore_from(*gen, true);
  if (!st.ok()) {
    say(fmt::format("taking over pid {}: generation {}: {}", pid, *gen, st.error().message));
    return false;
  }
  tell("took over pid {} through generation {}", pid, *gen);
  return true;
}

// Checkpoints the orphaned program and ends it; the generation's ID once its PIDs are free.
Result<std::string> Supervisor::checkpoint_to_adopt(pid_t pid) {
  // The dead supervisor's last checkpoint may still be under way.
  CKPT_TRY(wait_untraced(pid, std::chrono::seconds(30)));
  auto tree = process_tree(pid);
  DumpOptions d;
  d.pid = pid;
  d.shell_job = true;
  // The program lives on through its adoption, and so do its connections and their peers. A
  // connection not yet accepted cannot be saved: better its client gets a reset than the
  // program stays unsupervised.
  d.tcp_established = true;
  d.skip_in_flight = true;
  if (opts_.compress) d.write.compression = image::Compression::zstd;
  CKPT_TRY_ASSIGN(DumpResult r, dump_process(store_, d));
  policy_.checkpointed(r.generation.id);
  ++state_.checkpoints;
  state_.last_generation = r.generation.id;
  state_.last_checkpoint_unix_ns = unix_now_ns();
  state_.last_checkpoint_bytes = r.generation.total_bytes;
  state_.last_frozen_ms = ms(r.frozen);
  apply_retention();
  // Orphans are reaped by init, not by us: their PIDs are free only once it has done so.
  if (Status gone = wait_gone(tree, std::chrono::seconds(30)); !gone.ok())
    log::warn("supervisor", "{}", gone.error().message);
  return r.generation.id;
}

// Kills `pid` and every process below it, children first listed so that none escapes by forking.
void kill_below(pid_t pid) {
  if (pid <= 0) return;  // never a process group, never every process
  if (auto kids = proc::list_children(pid); kids.ok())
    for (pid_t k : *kids) kill_below(k);
  ::kill(pid, SIGKILL);
}

// Whatever the crashed program left running (its children, ours now as their subreaper) is not
// part of the program that comes back, and would hold the PIDs a restore needs.
void Supervisor::end_leftovers() {
  for (int round = 0; round < 100; ++round) {
    auto kids = proc::list_children(::getpid());
    if (!kids.ok() || kids->empty()) return;
    for (pid_t k : *kids) kill_below(k);
    for (pid_t k : *kids) (void)wait_end(k);
  }
}

// Tries origins in the policy's order until one runs. A value means the run is over.
std::optional<int> Supervisor::recover(Clock::time_point crashed_at) {
  state_.phase = "recovering";
  save_state();
  end_leftovers();
  for (;;) {
    auto origin = policy_.next_origin(available_generations());
    if (!origin) {
      say(policy_.report(fmt::format(
          "giving up: every generation and a fresh start crashed more than {} times within {:.1f}s",
          opts_.policy.max_retries, opts_.policy.min_uptime.count())));
      return finish(1, "gave up");
    }
    Status st = origin->fresh() ? start_fresh() : restore_from(*origin->generation);
    if (st.ok()) {
      tell("recovered from {} in {:.1f} ms (pid {}, restart {})", origin->describe(),
           ms(Clock::now() - crashed_at), state_.child_pid, policy_.restarts());
      return std::nullopt;
    }
    if (origin->fresh()) {
      say(policy_.report(fmt::format("giving up: a fresh start failed: {}", st.error().message)));
      return finish(1, "gave up");
    }
    say(fmt::format("skipping generation {}: {}", *origin->generation, st.error().message));
    policy_.unusable(*origin->generation, st.error().message);
  }
}

void Supervisor::checkpoint(bool requested) {
  auto answer = [&](bool ok, std::string msg) {
    if (!requested) return;
    ++state_.requests_served;
    state_.last_request_ok = ok;
    state_.last_request_message = std::move(msg);
  };
  if (child_ == 0) {
    answer(false, "the program is not running");
    save_state();
    return;
  }
  // The dump reads memory the server is still filling: it waits for the rest.
  settle_lazy();
  DumpOptions d;
  d.pid = child_;
  d.leave_running = true;
  d.shell_job = true;
  // A crash ends the program's connections (its peers get a FIN or a reset): they are saved to
  // come back closed, without the network lock, so clients see no pause at a checkpoint.
  d.tcp_close = true;
  if (opts_.compress) d.write.compression = image::Compression::zstd;
  d.incremental = opts_.incremental && incremental_in_row_ + 1 < opts_.full_every;
  if (opts_.incremental && opts_.write_tracking) d.tracker = &tracker_;
  d.pre_copy = opts_.pre_copy;
  auto r = dump_process(store_, d);
  if (!r.ok()) {
    // A program that ended while being checkpointed is told by its exit, next; "keeps running"
    // would be wrong.
    auto status = proc::read_status(child_);
    bool ended = !status.ok() || status->state == 'Z';
    // Failures are told even with --quiet: the user's protection is not what they think it is.
    if (ended)
      say(fmt::format("checkpoint failed: the program ended meanwhile ({})", r.error().message));
    else
      say(fmt::format("checkpoint failed, the program keeps running: {}", r.error().message));
    state_.last_checkpoint_error = r.error().message;
    answer(false, r.error().message);
    save_state();
    return;
  }
  const auto& g = r->generation;
  bool incremental = image::is_incremental(g);
  incremental_in_row_ = incremental ? incremental_in_row_ + 1 : 0;
  policy_.checkpointed(g.id);
  ++state_.checkpoints;
  state_.last_generation = g.id;
  state_.last_checkpoint_unix_ns = unix_now_ns();
  state_.last_checkpoint_bytes = g.total_bytes;
  state_.last_frozen_ms = ms(r->frozen);
  state_.last_checkpoint_error.clear();
  tell("checkpoint {}: {}{}, frozen {:.1f} ms, total {:.1f} ms{}", g.id, human_bytes(g.total_bytes),
       incremental ? fmt::format(" (incremental on {})", g.labels.at("parent")) : "", ms(r->frozen),
       ms(r->total), requested ? " (requested)" : "");
  answer(true, fmt::format("checkpoint {}: {}, frozen {:.1f} ms, total {:.1f} ms", g.id,
                           human_bytes(g.total_bytes), ms(r->frozen), ms(r->total)));
  apply_retention();
  save_state();
}

void Supervisor::apply_retention() {
  auto kept = store_.apply_retention({.keep = opts_.keep});
  if (!kept.ok())
    say(fmt::format("removing old generations: {}", kept.error().message));
  else
    policy_.forget(kept->removed);
}

std::optional<int> Supervisor::child_ended(const ExitStatus& st) {
  auto crashed_at = Clock::now();
  settle_lazy();
  child_ = 0;
  state_.child_pid = 0;
  bool stop = stop_requested_ || (hup_forwarded_ && st.signaled && st.code == SIGHUP);
  auto d = policy_.exited(st, now(), stop);
  if (d.action == CrashPolicy::Action::finish) {
    if (st.code != 0 || st.signaled) tell("program ended: {}", st.describe());
    return finish(d.exit_code, "exited");
  }
  state_.last_crash = st.describe();
  state_.last_crash_unix_ns = unix_now_ns();
  tell("crash: {}", st.describe());
  if (d.action == CrashPolicy::Action::give_up) {
    say(policy_.report(d.message));
    return finish(d.exit_code, "gave up");
  }
  return recover(crashed_at);
}

std::optional<int> Supervisor::reap() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (pid == child_ && (WIFEXITED(status) || WIFSIGNALED(status)))
      return child_ended(ExitStatus::from_wait(status));
  }
  // The engine waits for its tracee itself: a program that died during a checkpoint may have
  // been reaped there, and its status is gone.
  if (child_ != 0 && ::kill(child_, 0) < 0 && errno == ESRCH) {
    say(fmt::format("pid {} vanished (it died during a checkpoint)", state_.child_pid));
    return child_ended(ExitStatus{true, SIGKILL});
  }
  return std::nullopt;
}

std::optional<int> Supervisor::handle_signals() {
  bool want_checkpoint = false;
  for (auto& s : signals_.drain()) {
    if (s.signo == SIGUSR1) {
      want_checkpoint = true;
    } else if (s.signo != SIGCHLD) {
      // A signal from the terminal reached the program too (same process group): only
      // signals sent to the supervisor alone are passed on.
      if (child_ != 0 && s.code != SI_KERNEL) ::kill(child_, s.signo);
      if (s.signo == SIGHUP)
        hup_forwarded_ = true;
      else
        stop_requested_ = true;
    }
  }
  if (want_checkpoint) checkpoint(true);
  return reap();
}

int Supervisor::finish(int code, std::string phase) {
  state_.phase = std::move(phase);
  state_.exit_code = code;
  state_.ended_unix_ns = unix_now_ns();
  save_state();
  return code;
}

int Supervisor::run(pid_t pid_here) {
  // The program's orphans come to us: reaped at once, and ended when the program is recovered.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  state_.supervisor_pid = pid_here;
  state_.program = opts_.program;
  state_.started_unix_ns = unix_now_ns();
  if (auto st = write_run_state(store_.dir(), state_); !st.ok()) {
    say(st.error().message);
    return 1;
  }
  if (auto r = start(); r) return *r;
  pollfd fds[3] = {{signals_.fd(), POLLIN, 0}, {timer_.fd(), POLLIN, 0}, {-1, POLLIN, 0}};
  for (;;) {
    fds[2].fd = lazy_ ? lazy_->done_fd() : -1;  // poll skips a negative fd
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) {
      say(sys_error("poll").message);
      if (child_ != 0) ::kill(child_, SIGKILL);
      return finish(1, "exited");
    }
    if (fds[2].fd >= 0 && (fds[2].revents & POLLIN)) settle_lazy();
    if (auto r = handle_signals(); r) return *r;
    if (timer_.consume() && child_ != 0) {
      checkpoint(false);
      if (auto r = reap(); r) return *r;
    }
  }
}

}  // namespace

Result<fs::path> default_store_dir(const std::string& program) {
  std::string name = fs::path(program).filename().string();
  if (name.empty() || name == "." || name == "..") return errorf("no store name for '{}'", program);
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg && *xdg == '/') return fs::path(xdg) / "ckpt" / name;
  const char* home = std::getenv("HOME");
  if (home && *home == '/') return fs::path(home) / ".local/state/ckpt" / name;
  return make_error("neither $XDG_STATE_HOME nor $HOME is set: give the store with --dir");
}

static int supervise(RunOptions opts, image::Store store, image::StoreLock lock, pid_t pid_here);

int run_supervised(RunOptions opts) {
  // `ckpt run --resume --dir DIR` alone goes on with the program of the run recorded there.
  bool program_from_store = opts.program.empty() && opts.resume && !opts.dir.empty();
  if (opts.program.empty() && !program_from_store) {
    say("no program given (ckpt run [options] -- PROGRAM ARGS...)");
    return 2;
  }
  if (program_from_store) {
    auto st = read_run_state(opts.dir);
    if (!st.ok() || st->program.empty()) {
      say(fmt::format("no program given, and {} holds no earlier run of one", opts.dir.string()));
      return 2;
    }
    opts.program = st->program;
  }
  if (opts.dir.empty()) {
    auto d = default_store_dir(opts.program[0]);
    if (!d.ok()) {
      say(d.error().message);
      return 1;
    }
    opts.dir = *d;
  }
  // Everything that can refuse the run is checked before the program starts: nothing is lost.
  auto store = image::Store::open(opts.dir, {.create = true});
  if (!store.ok()) {
    say(store.error().message);
    return 1;
  }
  // With --resume, a supervisor that died may have left its last dumper holding the lock a while.
  auto lock = lock_run(*store, opts.resume, std::chrono::seconds(30));
  if (!lock.ok()) {
    say(lock.error().message);
    return 1;
  }
  // Without the privilege to restore with the same PID here, the run goes on in namespaces of its
  // own, after the store is opened (its owners' checks see the real uids only out here).
  if (user_ns::restore_needs_own_namespace())
    return run_in_own_namespaces([&](pid_t outer) {
      return supervise(std::move(opts), std::move(*store), std::move(*lock), outer);
    });
  return supervise(std::move(opts), std::move(*store), std::move(*lock), ::getpid());
}

// The run itself, in this process: `pid_here` is its PID as `ckpt checkpoint` and `ckpt status`
// see it.
static int supervise(RunOptions opts, image::Store store, image::StoreLock lock, pid_t pid_here) {
  auto signals = SignalReader::open({SIGCHLD, SIGUSR1, SIGINT, SIGTERM, SIGHUP, SIGQUIT});
  if (!signals.ok()) {
    say(signals.error().message);
    return 1;
  }
  auto timer = IntervalTimer::open(opts.interval);
  if (!timer.ok()) {
    say(timer.error().message);
    return 1;
  }
  std::optional<RunState> previous;
  if (opts.resume) {
    if (auto st = read_run_state(store.dir()); st.ok()) previous = std::move(*st);
  }
  Supervisor s(std::move(opts), std::move(store), std::move(lock), std::move(*signals),
               std::move(*timer), std::move(previous));
  return s.run(pid_here);
}

}  // namespace ckpt::supervisor
