// `ckpt dump` and `ckpt restore`: the transparent engine on the command line.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "cli/kept_log.hpp"
#include "cli/options.hpp"
#include "cli/progress.hpp"
#include "common/child_process.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "common/units.hpp"
#include "dump/dump.hpp"
#include "resources/lazy_pages.hpp"
#include "restore/pid_ns.hpp"
#include "restore/restore.hpp"
#include "restore/user_ns.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

// CRIU's options that ckpt accepts on both dump and restore.
struct CriuFlags {
  bool file_locks = false;
  bool tcp_established = false;
  bool tcp_close = false;
  bool ext_unix_sk = false;
};

struct DumpArgs {
  pid_t pid = 0;
  std::string dir;
  bool leave_running = false;
  bool shell_job = false;
  bool compress = false;
  bool incremental = false;
  bool pre_copy = false;
  bool json = false;
  bool trust_store = false;
  bool skip_in_flight = false;
  CriuFlags criu;
};

struct RestoreArgs {
  std::string dir;
  std::string generation;
  bool shell_job = false;
  bool detach = false;
  bool accept_changed_files = false;
  bool dry_run = false;
  bool force_vdso_proxy = false;
  bool pid_ns = false;
  bool lazy = false;
  std::string pidfile;
  bool json = false;
  bool trust_store = false;
  CriuFlags criu;
  std::vector<std::string> inherit_fds;
};

void print_json(const json& j) {
  std::string text = j.dump(2) + "\n";
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

// A failure: one line on stderr, and with --json also the object on stdout.
int fail(const Error& e, bool as_json, const KeptLog* kept = nullptr) {
  print_error(e.message);
  if (as_json) {
    json j{{"ok", false}, {"error", e.message}};
    j["log"] = kept && !kept->path().empty() ? json(kept->path().string()) : json(nullptr);
    print_json(j);
  }
  return kExitFailed;
}

void add_criu_flags(CLI::App* cmd, CriuFlags& f) {
  cmd->add_flag("--file-locks", f.file_locks, "Save and restore held file locks (CRIU's option)");
  cmd->add_flag("--tcp-established", f.tcp_established,
                "Save and restore established TCP connections (CRIU's option)");
  cmd->add_flag("--tcp-close", f.tcp_close,
                "Established TCP connections come back closed, as reset by their peers (CRIU's "
                "option; dump: saved without locking them)");
  cmd->add_flag("--ext-unix-sk", f.ext_unix_sk,
                "Allow unix sockets whose peer is outside the tree (CRIU's option)");
}

// What an incremental dump saved, as the dump's log line says it ("" for a plain full dump).
std::string incremental_note(const image::GenerationInfo& gen, bool asked) {
  auto parent = gen.labels.find("parent");
  auto changed = gen.labels.find("pages_changed");
  if (parent == gen.labels.end() || changed == gen.labels.end())
    return asked ? "full: no generation to build on, " : "";
  const std::string& n_of_m = changed->second;  // "N/M"
  auto slash = n_of_m.find('/');
  return fmt::format("incremental: {} of {} pages changed (page hashes) since {}, ",
                     n_of_m.substr(0, slash),
                     slash == std::string::npos ? "?" : n_of_m.substr(slash + 1), parent->second);
}

// What a pre-copy did, as the dump's line says it ("" without one).
std::string pre_copy_note(const image::GenerationInfo& gen) {
  auto copied = gen.labels.find("pre_copied_bytes");
  if (copied == gen.labels.end()) return "";
  auto held = gen.labels.find("held_bytes");
  auto snapshots = gen.labels.find("pre_copy_snapshots");
  std::string fell_back = snapshots == gen.labels.end() || snapshots->second == "0"
                              ? ""
                              : fmt::format(" ({} with a snapshot)", snapshots->second);
  return fmt::format("pre-copy: {} bytes copied running, {} read frozen{}, ", copied->second,
                     held == gen.labels.end() ? "0" : held->second, fell_back);
}

int report_dump(const DumpArgs& a, const std::filesystem::path& store, const DumpResult& r) {
  const auto& labels = r.generation.labels;
  auto label = [&](const char* k) {
    auto it = labels.find(k);
    return it == labels.end() ? json(nullptr) : json(it->second);
  };
  if (a.json) {
    print_json({{"ok", true},
                {"pid", a.pid},
                {"store", store.string()},
                {"generation", r.generation.id},
                {"path", r.generation.path.string()},
                {"bytes", r.generation.total_bytes},
                {"frozen_ms", ms(r.frozen)},
                {"total_ms", ms(r.total)},
                {"left_running", a.leave_running},
                {"parent", label("parent")},
                {"pages_changed", label("pages_changed")},
                {"pre_copied_bytes", label("pre_copied_bytes")},
                {"held_bytes", label("held_bytes")},
                {"pre_copy_snapshots", label("pre_copy_snapshots")}});
    return kExitOk;
  }
  fmt::print(stderr,
             "ckpt: dumped pid {} into {} ({} bytes, {}{}frozen {:.1f} ms, total {:.1f} ms)\n",
             a.pid, r.generation.id, r.generation.total_bytes,
             incremental_note(r.generation, a.incremental), pre_copy_note(r.generation),
             ms(r.frozen), ms(r.total));
  return kExitOk;
}

int run_dump(const DumpArgs& a) {
  auto store = image::Store::open(
      a.dir, {.create = true, .trust = image::Trust{.any_owner = a.trust_store}});
  if (!store.ok()) return fail(store.error(), a.json);
  KeptLog kept = KeptLog::start(store->dir(), "dump", invocation());
  log::info("cli", "dump pid {} into {}{}", a.pid, store->dir().string(),
            a.leave_running ? ", leaving it running" : "");
  Progress progress("dump", STDERR_FILENO);
  DumpOptions opts;
  opts.pid = a.pid;
  opts.leave_running = a.leave_running;
  opts.shell_job = a.shell_job;
  if (a.compress) opts.write.compression = image::Compression::zstd;
  opts.incremental = a.incremental;
  opts.pre_copy = a.pre_copy;
  opts.progress = progress.callback();
  opts.file_locks = a.criu.file_locks;
  opts.tcp_established = a.criu.tcp_established;
  opts.tcp_close = a.criu.tcp_close;
  opts.skip_in_flight = a.skip_in_flight;
  opts.ext_unix_sk = a.criu.ext_unix_sk;
  auto r = dump_process(*store, opts);
  progress.finish();
  if (!r.ok()) {
    Error e = kept.keep(r.error());
    return fail(e, a.json, &kept);
  }
  kept.discard();
  log::info("cli", "dumped pid {} into {}", a.pid, r->generation.id);
  return report_dump(a, store->dir(), *r);
}

// The restored process's status as a shell reports it: its exit code, or 128 + signal.
int wait_exit_code(pid_t pid) {
  int status = wait_end(pid);
  if (status < 0) return kExitFailed;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitFailed;
}

Result<RestoreOptions> restore_options(const RestoreArgs& a) {
  RestoreOptions opts;
  if (!a.generation.empty()) opts.generation = a.generation;
  opts.shell_job = a.shell_job;
  opts.accept_changed_files = a.accept_changed_files;
  opts.dry_run = a.dry_run;
  opts.force_vdso_proxy = a.force_vdso_proxy;
  opts.lazy = a.lazy;
  opts.file_locks = a.criu.file_locks;
  opts.tcp_established = a.criu.tcp_established;
  opts.tcp_close = a.criu.tcp_close;
  opts.ext_unix_sk = a.criu.ext_unix_sk;
  for (auto& text : a.inherit_fds) {
    CKPT_TRY_ASSIGN(InheritFd f, parse_inherit_fd(text));
    CKPT_TRY(check_inherit_fd(f));
    for (auto& other : opts.inherit_fds)
      if (other.fd == f.fd || other.key == f.key)
        return errorf("--inherit-fd '{}': fd {} or key '{}' is given twice", text, f.fd, f.key);
    opts.inherit_fds.push_back(std::move(f));
  }
  return opts;
}

void print_restored(const RestoreArgs& a, const image::Store& store, const RestoreResult& r,
                    const std::optional<pid_ns::Restored>& in_ns) {
  if (!a.json) {
    for (auto& p : r.skipped)
      fmt::print(stderr, "ckpt: {}; restored {} instead\n", p.message, r.generation.id);
    if (a.detach) fmt::print("{}\n", r.pid);
    std::fflush(stdout);
    return;
  }
  json skipped = json::array();
  for (auto& p : r.skipped) skipped.push_back({{"generation", p.id}, {"problem", p.message}});
  json out = {{"ok", true},
              {"pid", r.pid},
              {"store", store.dir().string()},
              {"generation", r.generation.id},
              {"took_ms", ms(r.took)},
              {"skipped", skipped},
              {"detached", a.detach}};
  if (in_ns) out["pid_namespace"] = {{"pid", in_ns->inner_pid}, {"init", in_ns->init}};
  if (r.ns_pid) out["pid_namespace"] = {{"pid", r.ns_pid}, {"init", r.pid}};
  print_json(out);
}

// A lazy restore's command serves the memory until it is all in: it ends only then (or when the
// process did).
int finish_lazy(const RestoreArgs& a, pid_t pid, const Result<lazy_pages::Stats>& done) {
  if (!done.ok()) {
    print_error(done.error().message);
    return kExitFailed;
  }
  if (!a.json) fmt::print(stderr, "ckpt: memory of pid {} {}\n", pid, lazy_pages::describe(*done));
  return kExitOk;
}

// Until a lazy restore's memory is in: served here, or by the namespace's init.
Result<lazy_pages::Stats> lazy_done(RestoreResult& r, std::optional<pid_ns::Restored>& in_ns) {
  if (in_ns) return pid_ns::wait_lazy(*in_ns);
  CKPT_TRY(r.lazy->wait());
  return r.lazy->stats();
}

// While a lazy restore's memory arrives, a signal that ends ckpt would leave the processes
// reading zeros where their pages belong: those that end a process by default wait until then.
class TerminationDeferred {
 public:
  TerminationDeferred() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM})
      sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~TerminationDeferred() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  TerminationDeferred(const TerminationDeferred&) = delete;
  TerminationDeferred& operator=(const TerminationDeferred&) = delete;

 private:
  sigset_t old_;
};

// Whether the generation a restore would take was dumped as the init of its own PID namespace
// (its "pid" label is 1): such an image gets a new namespace in any case.
bool root_is_ns_init(const image::Store& store, const RestoreOptions& opts) {
  auto gens = opts.generation ? std::vector<image::GenerationInfo>{} : store.list();
  if (opts.generation) {
    auto g = store.find(*opts.generation);
    if (g.ok()) gens.push_back(*g);
  }
  if (gens.empty()) return false;
  auto pid = gens.front().labels.find("pid");
  return pid != gens.front().labels.end() && pid->second == "1";
}

Result<RestoreResult> restore_here_or_in_ns(const image::Store& store, const RestoreOptions& opts,
                                            bool new_ns, std::optional<pid_ns::Restored>& in_ns) {
  if (new_ns && root_is_ns_init(store, opts)) {
    log::info("cli",
              "the image's root is the init of its PID namespace: it gets a new namespace of "
              "its own as its init (--pid-ns adds nothing)");
    new_ns = false;
  }
  if (!new_ns) return restore_process(store, opts);
  CKPT_TRY_ASSIGN(in_ns, pid_ns::restore(store, opts));
  return in_ns->result;
}

int run_restore(const RestoreArgs& a) {
  auto opts = restore_options(a);
  if (!opts.ok()) return fail(opts.error(), a.json);
  auto store = image::Store::open(a.dir, {.trust = image::Trust{.any_owner = a.trust_store}});
  if (!store.ok()) return fail(store.error(), a.json);
  KeptLog kept = KeptLog::start(store->dir(), "restore", invocation());
  log::info("cli", "restore from {}{}", store->dir().string(),
            a.generation.empty() ? "" : ", generation " + a.generation);
  // After the store is opened: in the new user namespace, owners not mapped there (root's
  // directories above the store) show as the overflow uid, which its trust check would refuse.
  bool new_pid_ns = a.pid_ns;
  if (!a.dry_run && user_ns::restore_needs_own_namespace()) {
    if (Status st = user_ns::enter_own(); !st.ok())
      return fail(kept.keep(st.error()), a.json, &kept);
    log::info("cli", "no CAP_CHECKPOINT_RESTORE: restoring in a user and PID namespace of its own");
    new_pid_ns = true;
  }
  Progress progress("restore", STDERR_FILENO);
  opts->progress = progress.callback();
  std::optional<pid_ns::Restored> in_ns;
  // Before the restore: its page server thread inherits the mask.
  std::optional<TerminationDeferred> blocked;
  if (a.lazy) blocked.emplace();
  auto r = restore_here_or_in_ns(*store, *opts, new_pid_ns, in_ns);
  progress.finish();
  if (!r.ok()) {
    Error e = kept.keep(r.error());
    return fail(e, a.json, &kept);
  }
  kept.discard();
  if (a.dry_run) {
    fmt::print(stderr, "ckpt: {} would restore as pid {} (nothing was created)\n", r->generation.id,
               r->pid);
    return kExitOk;
  }
  log::info("cli", "restored pid {} from {}", r->pid, r->generation.id);
  if (!a.pidfile.empty()) {
    auto st = write_file_atomic(std::filesystem::absolute(a.pidfile).parent_path(),
                                std::filesystem::path(a.pidfile).filename(),
                                as_bytes(std::to_string(r->pid) + "\n"), 0644);
    if (!st.ok()) print_error(st.error().message);
  }
  if (in_ns && !a.json)
    fmt::print(stderr,
               "ckpt: restored as pid {} in a new PID namespace (pid {} outside, its init {})\n",
               in_ns->inner_pid, r->pid, in_ns->init);
  if (r->ns_pid && !a.json)
    fmt::print(stderr,
               "ckpt: restored as pid {}, the init of a new PID namespace (pid {} outside)\n",
               r->ns_pid, r->pid);
  print_restored(a, *store, *r, in_ns);
  if (a.lazy && !a.dry_run && (r->lazy || in_ns)) {
    int code = finish_lazy(a, r->pid, lazy_done(*r, in_ns));
    blocked.reset();
    if (code != kExitOk) return code;
  }
  // In a namespace the root is its init's child; the init ends with the root's code.
  return a.detach ? kExitOk : wait_exit_code(in_ns ? in_ns->init : r->pid);
}

void add_dump(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<DumpArgs>();
  auto* cmd = app.add_subcommand("dump", "Checkpoint a running process into a store");
  cmd->add_option("-t,--tree", args->pid, "PID of the process (with its children)")
      ->required()
      ->check(CLI::Range(1, 1 << 22));
  cmd->add_option("-D,--images-dir", args->dir, "Store directory (created if missing)")
      ->required()
      ->check(non_empty());
  cmd->add_flag("-R,--leave-running", args->leave_running,
                "Let the process run on (default: kill it once the image is on disk)");
  cmd->add_flag("-j,--shell-job", args->shell_job,
                "The process uses a terminal or its standard streams come from outside; restore "
                "gives it those of its caller");
  cmd->add_flag("--incremental", args->incremental,
                "Store only the pages changed since the newest generation of this process");
  cmd->add_flag("--pre-copy", args->pre_copy,
                "With --leave-running: copy the memory while the process runs, then freeze it "
                "only to read what it wrote meanwhile (its mappings are registered with a "
                "userfaultfd of ckpt's until the dump ends)");
  cmd->add_flag("--compress", args->compress, "Compress the image with zstd");
  cmd->add_flag("--json", args->json, "Print the result as JSON on stdout");
  cmd->add_flag("--trust-store", args->trust_store,
                "Write into a store that another user owns or can write");
  add_criu_flags(cmd, args->criu);
  cmd->add_flag("--skip-in-flight", args->skip_in_flight,
                "Leave out TCP connections waiting in a listener's accept queue instead of "
                "refusing the dump (CRIU's option)");
  cmd->footer("A failed dump keeps its log in DIR/logs/ and names it in the error line.");
  cmd->callback([args, exit_code] { *exit_code = run_dump(*args); });
}

void add_restore(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RestoreArgs>();
  auto* cmd = app.add_subcommand("restore", "Restore a process from a store");
  cmd->add_option("-D,--images-dir", args->dir, "Store directory")->required()->check(non_empty());
  cmd->add_option("--generation", args->generation, "Generation id (default: newest valid)")
      ->check(non_empty());
  cmd->add_flag("-j,--shell-job", args->shell_job, "Give the process this terminal and stdio");
  cmd->add_flag("-d,--detach,--restore-detached", args->detach,
                "Print the PID and return instead of waiting");
  cmd->add_flag("--accept-changed-files", args->accept_changed_files,
                "Restore even if open or mapped files changed size since the dump");
  cmd->add_option("--pidfile", args->pidfile, "Write the restored PID to this file")
      ->check(non_empty());
  cmd->add_flag("--force-vdso-proxy", args->force_vdso_proxy,
                "Give the process a proxy to this kernel's vdso as if the image came from "
                "another kernel (done anyway when it does)");
  cmd->add_flag("--dry-run", args->dry_run,
                "Read and check the image and what it needs here (kernel, PIDs, files), create "
                "nothing");
  cmd->add_flag("--pid-ns", args->pid_ns,
                "Restore in a new PID namespace, with the same PIDs inside it (while they are "
                "taken here, or to run several copies); --pidfile and --json give the PID outside");
  cmd->add_flag("--lazy", args->lazy,
                "Let the process run before its memory is in: pages come on demand and in the "
                "background; with --detach, ckpt returns once all are in");
  cmd->add_flag("--json", args->json, "Print the result as JSON on stdout");
  cmd->add_flag("--trust-store", args->trust_store,
                "Restore from a store that another user owns or can write (see docs/security.md)");
  add_criu_flags(cmd, args->criu);
  cmd->add_option("--inherit-fd", args->inherit_fds,
                  "fd[N]:KEY: this command's fd N stands for the file the image calls KEY, e.g. "
                  "fd[7]:pipe:[12345] (CRIU's option; repeatable)")
      ->type_name("fd[N]:KEY");
  cmd->footer(
      "Without --detach, ckpt waits and exits with the process's status (128+N for signal N).\n"
      "A failed restore keeps its log in DIR/logs/ and names it in the error line.");
  cmd->callback([args, exit_code] { *exit_code = run_restore(*args); });
}

const CommandRegistrar dump_registrar{{10, add_dump}};
const CommandRegistrar restore_registrar{{11, add_restore}};

}  // namespace
}  // namespace ckpt::cli
