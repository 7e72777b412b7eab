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
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <thread>

#include "common/checksum.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "common/tracer_crew.hpp"
#include "common/units.hpp"
#include "image/chain.hpp"
#include "proc/maps.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "resources/cow_shared.hpp"
#include "resources/deleted_files.hpp"
#include "resources/files.hpp"
#include "resources/lazy_pages.hpp"
#include "resources/locks.hpp"
#include "resources/memory.hpp"
#include "resources/process.hpp"
#include "resources/seccomp.hpp"
#include "resources/settings.hpp"
#include "resources/shared_memory.hpp"
#include "resources/signals.hpp"
#include "resources/sysv_ipc.hpp"
#include "resources/threads.hpp"
#include "resources/timers.hpp"
#include "resources/tree.hpp"
#include "restore/pid_ns.hpp"
#include "restore/puppet.hpp"

namespace ckpt {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPage = 4096;
constexpr std::chrono::seconds kZombieWait{5};

Result<schema::ImageRoot> load_image(const image::Store& store, const image::GenerationInfo& gen) {
  if (!gen.find_section(schema::kProcessSection)) {
    if (gen.find_section("process.json"))
      return errorf(
          "generation {} holds a process image of an older format (process.json, ckpt {}); "
          "this ckpt reads format {}: restore it with the ckpt that wrote it",
          gen.id, gen.writer_version, schema::kProcessImageFormat);
    return errorf("generation {} holds no process image", gen.id);
  }
  CKPT_TRY_ASSIGN(auto bytes, store.read_section(gen, schema::kProcessSection));
  auto image = schema::decode_image(bytes);
  if (!image.ok()) return image.error().wrap(fmt::format("generation {}", gen.id));
  if (image->processes.empty()) return errorf("generation {}: the image holds no process", gen.id);
  return image;
}

Result<uint64_t> own_vdso_hash() {
  CKPT_TRY_ASSIGN(auto maps, proc::read_maps(getpid()));
  for (auto& m : maps) {
    if (m.kind != proc::MapKind::vdso) continue;
    return checksum64({reinterpret_cast<const std::byte*>(m.start), m.size()});
  }
  return make_error("restore: this process has no vdso");
}

// The restored process keeps pointers into its vdso: when this kernel's differs, a proxy takes
// the old one's place (vdso.hpp), built from the old vdso the image holds.
Result<bool> needs_vdso_proxy(const schema::ImageRoot& image, const RestoreOptions& opts) {
  CKPT_TRY_ASSIGN(uint64_t own, own_vdso_hash());
  bool differs = image.vdso.hash != own;
  if (differs && image.vdso.image.empty())
    return make_error("restore: the image was made on another kernel and does not hold its vdso");
  if (differs) log::info("restore", "this kernel's vdso differs from the image's: using a proxy");
  return differs || opts.force_vdso_proxy;
}

bool pid_free(pid_t pid) {
  return ::kill(pid, 0) < 0 && errno == ESRCH;
}

// A process just dumped (and killed) keeps its PID as a zombie until its parent reaps it, which
// for an orphan takes PID 1 up to 2 s on some machines: worth a short, bounded wait.
Status wait_for_zombie(pid_t pid) {
  auto st = proc::read_stat(pid);
  if (!st.ok() || st->state != 'Z')
    return errorf("restore: pid {} is in use by another process", pid);
  log::warn("restore",
            "pid {} is held by a zombie that its parent (pid {}) has not reaped yet; "
            "waiting up to {} s",
            pid, st->ppid, kZombieWait.count());
  auto deadline = Clock::now() + kZombieWait;
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (pid_free(pid)) return {};
  }
  return errorf(
      "restore: pid {} is still held by a zombie that its parent (pid {}) has not "
      "reaped in {} s",
      pid, st->ppid, kZombieWait.count());
}

Status check_pid_free(pid_t pid) {
  if (pid <= 0) return errorf("restore: pid {} in the image is not a process id", pid);
  if (pid_free(pid)) return {};
  return wait_for_zombie(pid);
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

// Its PIDs are those of a new namespace, where every PID is free.
bool is_ns_init_image(const schema::ImageRoot& image) {
  return image.processes[0].pid == 1;
}

Status check_before_restore(const schema::ImageRoot& image, const RestoreOptions& opts) {
  bool own_ns = is_ns_init_image(image);
  for (auto& p : image.processes) {
    if (!own_ns) CKPT_TRY(check_pid_free(p.pid));
    if (p.zombie) continue;
    if (p.threads.empty()) return errorf("restore: process {} of the image has no thread", p.pid);
    CKPT_TRY(process::check_before_restore(p));
    CKPT_TRY(settings::check_before_restore(p));
    if (!opts.accept_changed_files) CKPT_TRY(check_mapped_files(memory::files_to_map(p)));
    for (size_t i = 1; i < p.threads.size() && !own_ns; ++i)
      CKPT_TRY(check_pid_free(p.threads[i].tid));
  }
  return {};
}

std::string exe_key(const schema::ProcessRecord& proc) {
  if (proc.task.exe_deleted) return deleted_files::handed_key(*proc.task.exe_deleted);
  return "exe:" + proc.task.exe;
}

// Descriptors in the restorer that every puppet inherits: files to map, exe files, recreated
// deleted files and open files shared between processes.
struct Handed {
  std::vector<ScopedFd> owned;
  HandedFds fds;

  void add(std::string key, ScopedFd fd) {
    fds.fds.push_back(fd.get());
    fds.keys.push_back(std::move(key));
    owned.push_back(std::move(fd));
  }
};

Status add_mapped_files(const schema::ProcessRecord& proc, Handed& h) {
  for (auto& f : memory::files_to_map(proc)) {
    std::string key = memory::mapping_fd_key(f.path, f.writable);
    if (h.fds.find(key) >= 0) continue;
    CKPT_TRY_ASSIGN(ScopedFd fd, open_file(f.path, f.writable ? O_RDWR : O_RDONLY));
    h.add(std::move(key), std::move(fd));
  }
  if (proc.task.exe_deleted || h.fds.find(exe_key(proc)) >= 0) return {};
  CKPT_TRY_ASSIGN(ScopedFd exe_fd, open_file(proc.task.exe, O_RDONLY));
  h.add(exe_key(proc), std::move(exe_fd));
  return {};
}

bool used_by_puppets(const schema::ImageRoot& image, int32_t deleted_id) {
  for (auto& p : image.processes) {
    if (p.task.cwd_deleted == deleted_id || p.task.exe_deleted == deleted_id) return true;
    for (auto& v : p.memory.vmas)
      if (v.deleted_file == deleted_id) return true;
  }
  return false;
}

Result<Handed> open_handed_fds(const image::Store& store, const image::GenerationInfo& gen,
                               const schema::ImageRoot& image, const RestoreOptions& opts) {
  Handed h;
  for (auto& p : image.processes)
    if (!p.zombie) CKPT_TRY(add_mapped_files(p, h));
  CKPT_TRY_ASSIGN(auto shm, shared_memory::recreate(store, gen, image.shm_objects));
  std::map<int32_t, int> shm_objects;
  for (auto& [id, fd] : shm) {
    shm_objects[id] = fd.get();
    h.add(shared_memory::handed_key(id), std::move(fd));
  }
  std::set<int32_t> executables;
  for (auto& p : image.processes)
    if (p.task.exe_deleted) executables.insert(*p.task.exe_deleted);
  CKPT_TRY_ASSIGN(auto deleted,
                  deleted_files::recreate(store, gen, image.deleted_files, executables));
  std::map<int32_t, int> inodes;
  for (auto& [id, fd] : deleted) inodes[id] = fd.get();
  auto holder = [&](uint32_t id) -> std::string {
    for (auto& p : image.processes)
      for (auto& f : p.fds)
        if (f.open_file == id) return fmt::format("pid {}: fd {}", p.pid, f.fd);
    return fmt::format("open file {}", id);
  };
  fds::RecreateEnv env{
      store,          gen,    image,       opts.shell_job, opts.accept_changed_files,
      opts.tcp_close, inodes, shm_objects, holder};
  auto files = files::recreate(env, opts.inherit_fds);
  if (!files.ok()) return files.error().wrap("restore");
  for (auto& [id, fd] : *files) h.add(files::handed_key(id), std::move(fd));
  // Only those mapped or a cwd: an fd more of a leased file would keep its lease from being
  // taken again.
  for (auto& [id, fd] : deleted)
    if (used_by_puppets(image, id)) h.add(deleted_files::handed_key(id), std::move(fd));
  return h;
}

Result<PuppetPlan> make_plan(const schema::ImageRoot& image, const Handed& handed,
                             const RestoreOptions& opts, bool vdso_proxy) {
  CKPT_TRY_ASSIGN(tree::Shape shape, tree::shape(image.processes));
  CKPT_TRY_ASSIGN(auto trees, tree::restore_plans(image.processes));
  PuppetPlan plan;
  plan.shell_job = opts.shell_job;
  plan.vdso_proxy = vdso_proxy;
  plan.handed = handed.fds;
  plan.image = &image;
  CKPT_TRY_ASSIGN(auto own, proc::read_maps(getpid()));
  for (size_t i = 0; i < image.processes.size(); ++i) {
    PuppetSpec spec;
    spec.pid = shape.pids[i];
    spec.rec = &image.processes[i];
    spec.tree = trees[i];
    spec.zombie = image.processes[i].zombie.has_value();
    if (!spec.zombie) spec.trampoline = choose_trampoline(image.processes[i], own);
    plan.processes.push_back(std::move(spec));
    if (shape.parent[i] >= 0) plan.processes[shape.parent[i]].children.push_back(i);
  }
  return plan;
}

Status build(RestoreContext& ctx, const std::vector<int>& kept, const HandedFds& handed) {
  int exe_fd = -1;
  for (size_t i = 0; i < handed.keys.size(); ++i) {
    // A deleted executable's copy is also what its code is mapped from.
    if (handed.keys[i] == exe_key(*ctx.rec)) exe_fd = kept[i];
    ctx.mapping_fds[handed.keys[i]] = kept[i];
  }
  PhaseClock clock("restore", fmt::format("pid {}", ctx.pid));
  CKPT_TRY(threads::drop_puppet_rseq(ctx));
  CKPT_TRY(settings::restore_early(ctx));
  clock.mark("early settings");
  CKPT_TRY(memory::restore(ctx));
  clock.mark("memory");
  CKPT_TRY(process::restore_mm(ctx, exe_fd));
  CKPT_TRY(threads::restore(ctx));
  clock.mark("mm and threads");
  CKPT_TRY(settings::restore_no_new_privs(ctx));
  CKPT_TRY(signals::restore(ctx));
  CKPT_TRY(files::place_after_tree(ctx));
  // The handed fds are one block above every fd of the image (files::restore_in_puppet).
  auto [low, high] = std::minmax_element(kept.begin(), kept.end());
  if (low != kept.end())
    CKPT_TRY(ctx.main_remote->call("close_range", SYS_close_range,
                                   {uint64_t(*low), uint64_t(*high), 0}));
  // Not before: closing any descriptor of a file drops the process's POSIX locks on it.
  CKPT_TRY(locks::take_process_locks(ctx));
  // The puppet asked to die with its creator; the restored process must not.
  CKPT_TRY(ctx.main_remote->call("prctl(PR_SET_PDEATHSIG)", SYS_prctl, {PR_SET_PDEATHSIG, 0}));
  CKPT_TRY(seccomp::restore(ctx));  // before credentials: needs CAP_SYS_ADMIN if no no_new_privs
  CKPT_TRY(settings::restore_privileges(ctx));  // ids, capabilities, pdeathsig: per thread
  CKPT_TRY(timers::restore(ctx));
  CKPT_TRY(settings::restore_scheduling(ctx));
  CKPT_TRY(threads::set_final_state(ctx));
  clock.mark("fds, locks, credentials, timers");
  // The restorer page goes last; the main thread stops at the exit of this munmap and leaves
  // with its own registers, never returning into the unmapped page.
  CKPT_TRY(ctx.main_remote->call("munmap", SYS_munmap, {ctx.trampoline, kPage}));
  return {};
}

// The restorer page: its code (arch::kTrampolineCode), then scratch memory.
constexpr uint64_t kTrampolineCodeRoom = 64;

// One process being built. Not movable: main_remote points at remote, remote into ctx.threads.
struct ProcessBuild {
  RestoreContext ctx;
  std::optional<ptrace::RemoteSyscalls> remote;

  ProcessBuild() = default;
  ProcessBuild(const ProcessBuild&) = delete;
  ProcessBuild& operator=(const ProcessBuild&) = delete;

  // A half-built process must never run: kill it while every thread is still stopped, then reap
  // the traced threads (a leader cannot be reaped while traced zombie threads remain).
  ~ProcessBuild() {
    if (ctx.threads.empty()) return;
    ::kill(ctx.pid, SIGKILL);
    if (remote) remote->abandon();
    for (size_t i = 1; i < ctx.threads.size(); ++i) {
      ::waitpid(ctx.threads[i].tid, nullptr, __WALL);
      ctx.threads[i].tracee.release();
    }
  }
  // Lets the process run.
  Status finish() {
    CKPT_TRY(remote->finish());
    ctx.threads.clear();
    return {};
  }
};

Result<std::unique_ptr<ProcessBuild>> build_process(
    const image::Store& store, const image::GenerationInfo& gen, const PuppetPlan& plan,
    PuppetTree& puppets, size_t i, ByteProgress& progress, const cow_shared::Base& base,
    lazy_pages::Server* lazy, int cpu, const fds::OpenedFiles& late) {
  auto b = std::make_unique<ProcessBuild>();
  RestoreContext& ctx = b->ctx;
  const PuppetSpec& spec = plan.processes[i];
  ctx.pid = spec.pid;
  ctx.section_prefix = section_prefix(spec.pid, i == 0);
  ctx.store = &store;
  ctx.generation = gen;
  ctx.image = plan.image;
  ctx.rec = spec.rec;
  ctx.shell_job = plan.shell_job;
  ctx.vdso_proxy = plan.vdso_proxy;
  ctx.progress = &progress;
  ctx.base = &base;
  ctx.lazy = lazy;
  ctx.late_files = &late;
  // On its builder's CPU until its threads get their own masks (settings::restore_scheduling).
  ctx.mask_before_pin = CpuPin::pin(spec.pid, cpu).release();
  ctx.trampoline = spec.trampoline;
  static_assert(sizeof(arch::kTrampolineCode) <= kTrampolineCodeRoom);
  ctx.scratch = {spec.trampoline + kTrampolineCodeRoom, kPage - kTrampolineCodeRoom};
  // main_remote points into ctx.threads: it must never reallocate.
  ctx.threads.reserve(spec.rec->threads.size());
  ctx.threads.push_back(
      ThreadHandle{spec.pid, ptrace::Tracee::adopt(spec.pid, puppets.tracee(i).options()), {}, {}});
  puppets.tracee(i).release();  // ctx.threads[0] owns the attachment now
  CKPT_TRY_ASSIGN(auto remote,
                  ptrace::RemoteSyscalls::start(ctx.threads[0].tracee, ctx.trampoline));
  b->remote.emplace(std::move(remote));
  ctx.main_remote = &*b->remote;
  auto started = Clock::now();
  Status st = build(ctx, puppets.handed_fds(i), plan.handed);
  log::info("restore", "pid {}: {} threads, {} bytes of pages, {} fds: {}", ctx.pid,
            spec.rec->threads.size(), spec.rec->memory.page_bytes, spec.rec->fds.size(),
            st.ok() ? fmt::format("built in {:.1f} ms", ms(Clock::now() - started)) : "failed");
  if (!st.ok()) {
    log::debug("restore", "failed: {}", st.error().message);
    return st.error().wrap(fmt::format("restore pid {}", ctx.pid));
  }
  return b;
}

// What a restore would plan, without opening or creating anything.
Result<RestoreResult> dry_run(const schema::ImageRoot& image, const image::GenerationInfo& gen,
                              Clock::time_point started) {
  CKPT_TRY(tree::shape(image.processes));
  RestoreResult result;
  result.pid = image.processes[0].pid;
  result.generation = gen;
  result.took = Clock::now() - started;
  return result;
}

// What a restore has made before its puppets exist.
struct Prepared {
  const image::Store& store;
  const image::GenerationInfo& gen;
  const schema::ImageRoot& image;
  const Handed& handed;
  const PuppetPlan& plan;
  const cow_shared::Base& base;
  sysv_ipc::Recreated& ipc;
  const RestoreOptions& opts;
};

// Builds the puppets of `order` (indices, parents first) several at once: order[n] is seized,
// built and later let go by member n mod the crew's size (TracerCrew::share()). The first
// failure in `order` is returned.
Status build_each(const Prepared& p, PuppetTree& puppets, TracerCrew& crew,
                  const std::vector<size_t>& order, ByteProgress& progress,
                  lazy_pages::Server* lazy, const fds::OpenedFiles& late,
                  std::vector<std::unique_ptr<ProcessBuild>>& built) {
  std::vector<size_t> positions(order.size());
  std::iota(positions.begin(), positions.end(), size_t{0});
  auto result = crew.share(positions, [&](size_t n) -> Status {
    size_t i = order[n];
    CKPT_TRY(puppets.seize(i));
    CKPT_TRY_ASSIGN(built[i], build_process(p.store, p.gen, p.plan, puppets, i, progress, p.base,
                                            lazy, crew.cpu(n % crew.size()), late));
    return {};
  });
  for (auto& r : result) CKPT_TRY(r);
  return {};
}

// The puppets made into the image's processes, all built before any is let go.
Result<RestoreResult> build_all(const Prepared& p, PuppetTree puppets, PhaseClock& clock) {
  CKPT_TRY(files::set_owners(p.image, p.handed.fds));
  CKPT_TRY(locks::take_open_file_locks(p.image, p.handed.fds));
  auto late = files::open_after_tree(p.image, p.handed.fds);
  if (!late.ok()) return late.error().wrap("restore");
  ByteProgress progress(p.opts.progress);
  for (auto& proc : p.image.processes) progress.expect(proc.memory.page_bytes);
  // Before the builds: a puppet touching memory left to it waits for its thread.
  std::shared_ptr<lazy_pages::Server> lazy;
  if (p.opts.lazy) {
    CKPT_TRY_ASSIGN(lazy, lazy_pages::Server::start());
  }
  std::vector<size_t> order;  // the processes to build, parents first
  for (size_t i = 0; i < puppets.size(); ++i)
    if (!p.plan.processes[i].zombie) order.push_back(i);
  // Declared before the builds: a build that fails is killed before its thread ends (which would
  // kill it too, PTRACE_O_EXITKILL, but only after the others of that thread).
  TracerCrew crew(TracerCrew::members_for(order.size()));
  std::vector<CpuPin> crew_pins = crew.pin_members();
  std::vector<std::unique_ptr<ProcessBuild>> built(puppets.size());
  Status st = build_each(p, puppets, crew, order, progress, lazy.get(), *late, built);
  // A damaged page met by the page server stopped the build: that is the cause to name.
  if (!st.ok() && lazy && lazy->error()) return *lazy->error();
  CKPT_TRY(st);
  clock.mark("processes built");
  if (lazy) lazy->start_guard();
  CKPT_TRY(p.ipc.finish());
  for (size_t n = order.size(); n-- > 0;)
    CKPT_TRY(crew.run(n % crew.size(), [&, n] { return built[order[n]]->finish(); }));
  // Guarded before they run: ckpt's death from then on takes them along.
  if (lazy) lazy->seal();
  puppets.release();
  clock.mark("let go");
  RestoreResult result;
  result.lazy = std::move(lazy);
  result.pid = p.plan.processes[0].pid;
  result.generation = p.gen;
  return result;
}

Status set_ns_last_pid(int32_t last) {
  Status st = proc::write_proc_text("/proc/sys/kernel/ns_last_pid", std::to_string(last));
  if (!st.ok()) return st.error().wrap("restore: set the namespace's last PID");
  return {};
}

// The image's root was PID 1 of its own namespace: so it is again (pid_ns.hpp).
Result<RestoreResult> restore_as_ns_init(const Prepared& p, PhaseClock& clock) {
  if (p.opts.lazy)
    return make_error(
        "restore: --lazy is not supported yet for an image whose root is the init of its PID "
        "namespace; restore it without --lazy");
  auto build = [&](PuppetTree puppets) -> Result<RestoreResult> {
    // In the namespace, before anything is forked there: nothing the restore makes moves it
    // (every PID is chosen).
    if (p.image.ns_last_pid) CKPT_TRY(set_ns_last_pid(*p.image.ns_last_pid));
    return build_all(p, std::move(puppets), clock);
  };
  CKPT_TRY_ASSIGN(RestoreResult r, pid_ns::restore_as_init(p.plan, build));
  p.ipc.release();  // finished by the process that built the tree
  r.generation = p.gen;
  return r;
}

// Restores one generation. Section checksums are checked as the sections are read, the pages
// while they go into the still stopped puppets, which a mismatch abandons. Every process stays
// stopped until all are built.
Result<RestoreResult> restore_generation(const image::Store& store,
                                         const image::GenerationInfo& gen,
                                         const RestoreOptions& opts) {
  auto started = Clock::now();
  PhaseClock clock("restore", fmt::format("generation {}", gen.id));
  CKPT_TRY_ASSIGN(schema::ImageRoot image, load_image(store, gen));
  clock.mark("image read");
  CKPT_TRY(check_before_restore(image, opts));
  CKPT_TRY_ASSIGN(bool vdso_proxy, needs_vdso_proxy(image, opts));
  if (opts.dry_run) return dry_run(image, gen, started);
  clock.mark("checks");
  CKPT_TRY_ASSIGN(Handed handed, open_handed_fds(store, gen, image, opts));
  clock.mark("open files made");
  CKPT_TRY_ASSIGN(sysv_ipc::Recreated ipc, sysv_ipc::recreate(image));
  CKPT_TRY_ASSIGN(PuppetPlan plan, make_plan(image, handed, opts, vdso_proxy));
  clock.mark("planned");
  // Before the puppets: each is a fork that starts with it.
  CKPT_TRY_ASSIGN(cow_shared::Base base, cow_shared::premap(store, gen, image));
  clock.mark("root's shared memory mapped");
  plan.base = &base;
  plan.root_is_ns_init = is_ns_init_image(image);
  Prepared prepared{store, gen, image, handed, plan, base, ipc, opts};
  Result<RestoreResult> result = make_error("internal error");
  if (plan.root_is_ns_init) {
    result = restore_as_ns_init(prepared, clock);
  } else {
    CKPT_TRY_ASSIGN(PuppetTree puppets, PuppetTree::create(plan));
    clock.mark("puppets made");
    result = build_all(prepared, std::move(puppets), clock);
  }
  if (result.ok()) result->took = Clock::now() - started;
  return result;
}

Result<RestoreResult> restore_checked(const image::Store& store, const image::GenerationInfo& gen,
                                      const RestoreOptions& opts) {
  // An incremental generation needs its parents: a missing or replaced one fails here, in one line.
  Status files = image::check_chain_files(gen);
  if (!files.ok()) return files.error();
  return restore_generation(store, gen, opts);
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
