#include "restore/restore.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "common/checksum.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "proc/maps.hpp"
#include "resources/deleted_files.hpp"
#include "resources/files.hpp"
#include "resources/memory.hpp"
#include "resources/process.hpp"
#include "resources/seccomp.hpp"
#include "resources/signals.hpp"
#include "resources/threads.hpp"
#include "resources/timers.hpp"
#include "restore/puppet.hpp"

namespace ckpt {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kEngineFormat = 1;
constexpr uint64_t kPage = 4096;

Result<json> load_image(const image::Store& store, const image::GenerationInfo& gen) {
  CKPT_TRY_ASSIGN(auto bytes, store.read_section(gen, "process.json"));
  json j = json::parse(reinterpret_cast<const char*>(bytes.data()),
                       reinterpret_cast<const char*>(bytes.data()) + bytes.size(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return errorf("generation {}: process.json is not valid JSON", gen.id);
  if (!j.contains("engine_format") || j["engine_format"] != kEngineFormat)
    return errorf("generation {}: process image format {} is not supported by this ckpt", gen.id,
                  j.value("engine_format", 0));
  return j;
}

// The restored process keeps pointers into its vdso; ours must be byte for byte the same.
Status check_same_vdso(const json& image) {
  CKPT_TRY_ASSIGN(auto maps, proc::read_maps(getpid()));
  for (auto& m : maps) {
    if (m.kind != proc::MapKind::vdso) continue;
    std::span<const std::byte> text(reinterpret_cast<const std::byte*>(m.start), m.size());
    if (!image.contains("vdso_hash") || image["vdso_hash"].get<uint64_t>() != checksum64(text))
      return make_error("restore: the image was made on another kernel (its vdso differs)");
    return {};
  }
  return make_error("restore: this process has no vdso");
}

Status check_pids_free(const json& image) {
  for (auto& t : image["threads"]) {
    pid_t tid = t["tid"];
    if (::kill(tid, 0) == 0 || errno != ESRCH)
      return errorf("restore: pid {} is in use by another process", tid);
  }
  return {};
}

Status check_mapped_files(const std::vector<memory::MappedFile>& files) {
  for (auto& f : files) {
    struct stat st;
    if (::stat(f.path.c_str(), &st) < 0)
      return sys_error(fmt::format("restore: mapped file {}", f.path));
    if (static_cast<uint64_t>(st.st_size) != f.size)
      return errorf("restore: mapped file {} changed size since the dump ({} bytes, was {})",
                    f.path, st.st_size, f.size);
  }
  return {};
}

struct OpenedFiles {
  std::vector<ScopedFd> fds;
  std::vector<std::string> keys;
};

Result<OpenedFiles> open_mapped_files(const json& image) {
  OpenedFiles out;
  for (auto& f : memory::files_to_map(image)) {
    CKPT_TRY_ASSIGN(ScopedFd fd, open_file(f.path, f.writable ? O_RDWR : O_RDONLY));
    out.fds.push_back(std::move(fd));
    out.keys.push_back(memory::mapping_fd_key(f.path, f.writable));
  }
  std::string exe = image["process"]["exe"];
  CKPT_TRY_ASSIGN(ScopedFd exe_fd, open_file(exe, O_RDONLY));
  out.fds.push_back(std::move(exe_fd));
  out.keys.push_back("exe");
  return out;
}

// Deleted files are recreated by the restorer and reach the puppet like the mapped files.
Status add_deleted_files(const image::Store& store, const image::GenerationInfo& gen,
                         const json& image, OpenedFiles& files) {
  CKPT_TRY_ASSIGN(auto deleted, deleted_files::recreate(store, gen, image));
  for (auto& d : deleted) {
    files.fds.push_back(std::move(d.fd));
    files.keys.push_back(fmt::format("deleted:{}", d.id));
  }
  return {};
}

Status build(RestoreContext& ctx, Puppet& puppet, const OpenedFiles& files) {
  const auto& kept = puppet.kept_fds();
  int exe_fd = -1;
  for (size_t i = 0; i < files.keys.size(); ++i) {
    if (files.keys[i] == "exe")
      exe_fd = kept[i];
    else
      ctx.mapping_fds[files.keys[i]] = kept[i];
  }
  CKPT_TRY(threads::drop_puppet_rseq(ctx));
  CKPT_TRY(memory::restore(ctx));
  CKPT_TRY(process::restore_mm(ctx, exe_fd));
  CKPT_TRY(threads::restore(ctx));
  CKPT_TRY(signals::restore(ctx));
  for (int fd : kept) CKPT_TRY(ctx.main_remote->call("close", SYS_close, {uint64_t(fd)}));
  // The puppet asked to die with its restorer; the restored process must not.
  CKPT_TRY(ctx.main_remote->call("prctl(PR_SET_PDEATHSIG)", SYS_prctl, {PR_SET_PDEATHSIG, 0}));
  CKPT_TRY(seccomp::restore(ctx));  // before credentials: needs CAP_SYS_ADMIN if no no_new_privs
  CKPT_TRY(process::restore_credentials(ctx));
  CKPT_TRY(timers::restore(ctx));
  CKPT_TRY(threads::set_final_state(ctx));
  // The restorer page goes last; the main thread stops at the exit of this munmap and leaves
  // with its own registers, never returning into the unmapped page.
  CKPT_TRY(ctx.main_remote->call("munmap", SYS_munmap, {ctx.trampoline, kPage}));
  return {};
}

// A half-built process must never run: kill it while every thread is still stopped, then reap
// the traced threads (a leader cannot be reaped while traced zombie threads remain).
void abandon(RestoreContext& ctx) {
  ::kill(ctx.pid, SIGKILL);
  if (ctx.main_remote) ctx.main_remote->abandon();
  for (size_t i = 1; i < ctx.threads.size(); ++i) {
    ::waitpid(ctx.threads[i].tid, nullptr, __WALL);
    ctx.threads[i].tracee.release();
  }
  ctx.threads.erase(ctx.threads.begin() + 1, ctx.threads.end());
}

// Restores one generation. Section checksums are checked as the sections are read, the pages
// while they go into the still stopped puppet, which a mismatch abandons.
Result<RestoreResult> restore_generation(const image::Store& store,
                                         const image::GenerationInfo& gen,
                                         const RestoreOptions& opts) {
  auto started = Clock::now();
  CKPT_TRY_ASSIGN(json image, load_image(store, gen));
  CKPT_TRY(process::check_before_restore(image));
  if (!opts.accept_changed_files) {
    CKPT_TRY(files::check_before_restore(image));
    CKPT_TRY(check_mapped_files(memory::files_to_map(image)));
  }
  CKPT_TRY(check_same_vdso(image));
  CKPT_TRY(check_pids_free(image));
  CKPT_TRY_ASSIGN(OpenedFiles files, open_mapped_files(image));
  CKPT_TRY(add_deleted_files(store, gen, image, files));

  PuppetPlan plan;
  plan.pid = image["pid"];
  plan.image = &image;
  plan.shell_job = opts.shell_job;
  CKPT_TRY_ASSIGN(plan.trampoline, choose_trampoline(image));
  for (size_t i = 0; i < files.fds.size(); ++i) {
    plan.keep_fds.push_back(files.fds[i].get());
    if (files.keys[i].rfind("deleted:", 0) == 0)
      plan.deleted_files[std::stoi(files.keys[i].substr(8))] = i;
  }
  CKPT_TRY_ASSIGN(Puppet puppet, Puppet::create(plan));

  RestoreContext ctx;
  ctx.pid = plan.pid;
  ctx.store = &store;
  ctx.generation = gen;
  ctx.image = &image;
  ctx.shell_job = opts.shell_job;
  ctx.trampoline = plan.trampoline;
  ctx.scratch = {plan.trampoline + 64, kPage - 64};
  // main_remote points into ctx.threads: it must never reallocate.
  ctx.threads.reserve(image["threads"].size());
  ctx.threads.push_back(
      ThreadHandle{plan.pid, ptrace::Tracee::adopt(plan.pid, puppet.tracee().options())});
  puppet.tracee().release();  // ctx.threads[0] owns the attachment now
  {
    CKPT_TRY_ASSIGN(auto remote,
                    ptrace::RemoteSyscalls::start(ctx.threads[0].tracee, ctx.trampoline));
    ctx.main_remote = &remote;
    Status st = build(ctx, puppet, files);
    if (!st.ok()) {
      log::debug("restore", "failed: {}", st.error().message);
      abandon(ctx);
      return st.error().wrap(fmt::format("restore pid {}", ctx.pid));
    }
    CKPT_TRY(remote.finish());
  }
  ctx.threads.clear();  // detaches: the process runs
  puppet.release();
  RestoreResult result;
  result.pid = plan.pid;
  result.generation = gen;
  result.took = Clock::now() - started;
  return result;
}

Result<RestoreResult> restore_checked(const image::Store& store, const image::GenerationInfo& gen,
                                      const RestoreOptions& opts) {
  Status files = image::verify_generation_files(gen);
  if (!files.ok()) return files.error();
  try {
    return restore_generation(store, gen, opts);
  } catch (const std::exception& e) {
    // An image whose JSON has the wrong shape: report it like any other bad input.
    return errorf("restore: the image is malformed: {}", e.what());
  }
}

// The newest generation that restores. A failed one is passed over only when it is damaged
// (checked after the failure, so that a good image is read once): other failures (a PID in
// use, a changed file) would fail the same way with an older image.
Result<RestoreResult> restore_newest(const image::Store& store, const RestoreOptions& opts) {
  std::vector<image::Problem> problems;
  auto gens = store.list(&problems);
  for (auto& gen : gens) {
    auto r = restore_checked(store, gen, opts);
    Status damage = r.ok() ? Status{} : store.verify(gen);
    if (damage.ok()) {
      if (!r.ok()) return r;
      for (auto& p : problems)
        if (p.id > gen.id) r->skipped.push_back(p);
      std::sort(r->skipped.begin(), r->skipped.end(),
                [](const image::Problem& a, const image::Problem& b) { return a.id > b.id; });
      for (auto& p : r->skipped)
        log::debug("restore", "skipped generation {}: {}", p.id, p.message);
      return r;
    }
    problems.push_back({gen.id, damage.error().message});
  }
  if (problems.empty())
    return make_error(fmt::format("store {}: no valid generation", store.dir().string()), ENOENT);
  std::sort(problems.begin(), problems.end(),
            [](const image::Problem& a, const image::Problem& b) { return a.id > b.id; });
  return make_error(
      fmt::format("store {}: no valid generation ({} corrupt or incomplete, newest: {})",
                  store.dir().string(), problems.size(), problems.front().message),
      ENOENT);
}

}  // namespace

Result<RestoreResult> restore_process(const image::Store& store, const RestoreOptions& opts) {
  if (!opts.generation) return restore_newest(store, opts);
  CKPT_TRY_ASSIGN(auto gen, store.find(*opts.generation));
  return restore_checked(store, gen, opts);
}

}  // namespace ckpt
