// `ckpt dump` and `ckpt restore`: the transparent engine on the command line.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "cli/command.hpp"
#include "common/fs_util.hpp"
#include "dump/dump.hpp"
#include "restore/restore.hpp"

namespace ckpt::cli {
namespace {

struct DumpArgs {
  pid_t pid = 0;
  std::string dir;
  bool leave_running = false;
  bool shell_job = false;
  bool compress = false;
};

struct RestoreArgs {
  std::string dir;
  std::string generation;
  bool shell_job = false;
  bool detach = false;
  bool accept_changed_files = false;
  bool dry_run = false;
  bool force_vdso_proxy = false;
  std::string pidfile;
  std::vector<std::string> inherit_fds;
};

// CRIU's --inherit-fd syntax: fd[N]:KEY.
std::optional<InheritFd> parse_inherit_fd(const std::string& arg) {
  int fd = -1;
  int used = 0;
  if (std::sscanf(arg.c_str(), "fd[%d]:%n", &fd, &used) != 1 || used == 0 || fd < 0)
    return std::nullopt;
  std::string key = arg.substr(static_cast<size_t>(used));
  if (key.empty()) return std::nullopt;
  return InheritFd{fd, key};
}

double ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

int run_dump(const DumpArgs& a) {
  auto store = image::Store::open(a.dir, {.create = true});
  if (!store.ok()) {
    print_error(store.error().message);
    return kExitFailed;
  }
  DumpOptions opts;
  opts.pid = a.pid;
  opts.leave_running = a.leave_running;
  opts.shell_job = a.shell_job;
  if (a.compress) opts.write.compression = image::Compression::zstd;
  auto r = dump_process(*store, opts);
  if (!r.ok()) {
    print_error(r.error().message);
    return kExitFailed;
  }
  fmt::print(stderr, "ckpt: dumped pid {} into {} ({} bytes, frozen {:.1f} ms, total {:.1f} ms)\n",
             a.pid, r->generation.id, r->generation.total_bytes, ms(r->frozen), ms(r->total));
  return kExitOk;
}

// The restored process's status as a shell reports it: its exit code, or 128 + signal.
int wait_exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return kExitFailed;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitFailed;
}

int run_restore(const RestoreArgs& a) {
  auto store = image::Store::open(a.dir);
  if (!store.ok()) {
    print_error(store.error().message);
    return kExitFailed;
  }
  RestoreOptions opts;
  if (!a.generation.empty()) opts.generation = a.generation;
  opts.shell_job = a.shell_job;
  opts.accept_changed_files = a.accept_changed_files;
  for (auto& arg : a.inherit_fds) {
    auto in = parse_inherit_fd(arg);
    if (!in) {
      print_error(fmt::format("--inherit-fd {}: expected fd[N]:KEY, e.g. fd[0]:pipe:[1234]", arg));
      return kExitUsage;
    }
    opts.inherit_fds.push_back(*in);
  }
  opts.dry_run = a.dry_run;
  opts.force_vdso_proxy = a.force_vdso_proxy;
  auto r = restore_process(*store, opts);
  if (!r.ok()) {
    print_error(r.error().message);
    return kExitFailed;
  }
  if (a.dry_run) {
    fmt::print(stderr, "ckpt: {} would restore as pid {} (nothing was created)\n", r->generation.id,
               r->pid);
    return kExitOk;
  }
  for (auto& p : r->skipped)
    fmt::print(stderr, "ckpt: {}; restored {} instead\n", p.message, r->generation.id);
  if (!a.pidfile.empty()) {
    auto st = write_file_atomic(std::filesystem::absolute(a.pidfile).parent_path(),
                                std::filesystem::path(a.pidfile).filename(),
                                as_bytes(std::to_string(r->pid) + "\n"), 0644);
    if (!st.ok()) print_error(st.error().message);
  }
  if (a.detach) {
    fmt::print("{}\n", r->pid);
    return kExitOk;
  }
  return wait_exit_code(r->pid);
}

void add_dump(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<DumpArgs>();
  auto* cmd = app.add_subcommand("dump", "Checkpoint a running process into a store");
  cmd->add_option("-t,--tree", args->pid, "PID of the process")->required();
  cmd->add_option("-D,--images-dir", args->dir, "Store directory (created if missing)")->required();
  cmd->add_flag("--leave-running", args->leave_running,
                "Let the process run on (default: kill it once the image is on disk)");
  cmd->add_flag("--shell-job", args->shell_job,
                "The process uses a terminal or its standard streams come from outside; restore "
                "gives it those of its caller");
  cmd->add_flag("--compress", args->compress, "Compress the image with zstd");
  cmd->callback([args, exit_code] { *exit_code = run_dump(*args); });
}

void add_restore(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RestoreArgs>();
  auto* cmd = app.add_subcommand("restore", "Restore a process from a store");
  cmd->add_option("-D,--images-dir", args->dir, "Store directory")->required();
  cmd->add_option("--generation", args->generation, "Generation id (default: newest valid)");
  cmd->add_flag("--shell-job", args->shell_job, "Give the process this terminal and stdio");
  cmd->add_flag("-d,--detach", args->detach, "Print the PID and return instead of waiting");
  cmd->add_flag("--accept-changed-files", args->accept_changed_files,
                "Restore even if open or mapped files changed size since the dump");
  cmd->add_option("--pidfile", args->pidfile, "Write the restored PID to this file");
  cmd->add_flag("--force-vdso-proxy", args->force_vdso_proxy,
                "Give the process a proxy to this kernel's vdso as if the image came from "
                "another kernel (done anyway when it does)");
  cmd->add_flag("--dry-run", args->dry_run,
                "Read and check the image and what it needs here (kernel, PIDs, files), create "
                "nothing");
  cmd->add_option("--inherit-fd", args->inherit_fds,
                  "fd[N]:KEY: use this command's fd N for the image's open file KEY (as /proc "
                  "showed it at dump: pipe:[INO], socket:[INO] or a path)");
  cmd->footer(
      "Without --detach, ckpt waits and exits with the process's status (128+N for signal N).");
  cmd->callback([args, exit_code] { *exit_code = run_restore(*args); });
}

const CommandRegistrar dump_registrar{{10, add_dump}};
const CommandRegistrar restore_registrar{{11, add_restore}};

}  // namespace
}  // namespace ckpt::cli
