#include "dump/dump.hpp"

#include <signal.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

#include "ckpt/version.hpp"
#include "common/checksum.hpp"
#include "common/child_process.hpp"
#include "common/fault_point.hpp"
#include "common/fs_util.hpp"
#include "common/guard_process.hpp"
#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "common/tracer_crew.hpp"
#include "common/units.hpp"
#include "dump/freeze.hpp"
#include "dump/kill.hpp"
#include "dump/ns_init.hpp"
#include "dump/pre_copy.hpp"
#include "dump/snapshot.hpp"
#include "image/chain.hpp"
#include "proc/maps.hpp"
#include "proc/proc_file.hpp"
#include "proc/stat.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"
#include "resources/context.hpp"
#include "resources/fds/netlock.hpp"
#include "resources/fds/tcp_repair.hpp"
#include "resources/files.hpp"
#include "resources/memory.hpp"
#include "resources/namespaces.hpp"
#include "resources/page_index.hpp"
#include "resources/process.hpp"
#include "resources/seccomp.hpp"
#include "resources/settings.hpp"
#include "resources/signals.hpp"
#include "resources/sysv_ipc.hpp"
#include "resources/threads.hpp"
#include "resources/timers.hpp"
#include "resources/tree.hpp"
#include "resources/vm_flags.hpp"
#include "resources/write_tracking.hpp"

namespace ckpt {
namespace {

using Clock = std::chrono::steady_clock;

Status check_target(const DumpOptions& opts) {
  pid_t pid = opts.pid;
  if (pid <= 0) return errorf("dump: invalid pid {}", pid);
  if (pid == getpid()) return errorf("dump pid {}: ckpt cannot dump itself", pid);
  auto status = proc::read_status(pid);
  if (!status.ok()) {
    if (status.error().errnum == ESRCH || status.error().errnum == ENOENT)
      return errorf("dump pid {}: no such process", pid);
    return status.error().wrap(fmt::format("dump pid {}", pid));
  }
  if (status->tgid != pid)
    return errorf("dump pid {}: {} is a thread of process {}; give the process id", pid, pid,
                  status->tgid);
  if (status->tracer_pid != 0)
    return errorf("dump pid {}: already traced by pid {}", pid, status->tracer_pid);
  if (status->state == 'Z') return errorf("dump pid {}: the process is a zombie", pid);
  if (Status ns = tree::check_pid_namespace(pid, *status); !ns.ok())
    return errorf("dump {}", ns.error().message);
  if (Status ns = namespaces::check_same_as_ckpt(pid); !ns.ok())
    return errorf("dump {}", ns.error().message);
  // A kernel thread has no user memory or registers to save, and ptrace refuses it with EPERM,
  // which would read as a permission problem even to root.
  constexpr uint32_t kPfKthread = 0x00200000;
  if (auto stat = proc::read_stat(pid); stat.ok() && (stat->flags & kPfKthread))
    return errorf("dump pid {}: it is a kernel thread ({}), which has no user state to checkpoint",
                  pid, stat->comm);
  // Said first: nothing else about a process matters to a user who may not trace it.
  uid_t me = ::geteuid();
  if (me != 0 && (status->uid[0] != me || status->uid[1] != me || status->uid[2] != me))
    return errorf(
        "dump pid {}: no permission to trace it (it runs as uid {}; run as its owner or "
        "root)",
        pid, status->uid[1]);
  return {};
}

// A process killed during the dump runs exit code that writes its memory (each thread's
// clear-child-tid word, robust futexes): memory read meanwhile may no longer match the registers
// (a restored pthread_join would return at once). So every thread must still be in its ptrace
// stop once everything is read; a thread on its way out has left it.
Status check_still_stopped(const DumpContext& ctx) {
  for (const auto& t : ctx.threads) {
    auto st = proc::read_thread_stat(ctx.pid, t.tid);
    if (!st.ok() || st->state != 't')
      return errorf("pid {}: thread {} ended during the dump (was the process killed?)", ctx.pid,
                    t.tid);
  }
  return {};
}

// What belongs to the process alone: read for several processes at once.
Status dump_own_resources(DumpContext& ctx, PhaseClock& clock) {
  CKPT_TRY(threads::dump(ctx));
  clock.mark("threads");
  // What follows asks the main thread a few questions each: one injection for all of them.
  // After the threads, which read the main thread's registers and mask.
  constexpr size_t kScratch = 256;  // the most any of them borrows (settings: 152)
  CKPT_TRY_ASSIGN(HeldRemote held, HeldRemote::start(ctx, 0, kScratch));
  CKPT_TRY(signals::dump(ctx));
  clock.mark("signals");
  fault::point("dump", "signals read");
  CKPT_TRY(process::dump(ctx));
  clock.mark("process");
  CKPT_TRY(settings::dump(ctx));
  clock.mark("settings");
  CKPT_TRY(timers::dump(ctx));
  clock.mark("timers");
  return held.end();
}

// What the processes of the tree share records of (open files, deleted files, shared memory
// objects, the image's sections): one process after the other, in creation order.
Status dump_shared_resources(DumpContext& ctx, const DumpOptions& opts, memory::Plan& plan,
                             bool snapshot, PhaseClock& clock) {
  fds::DumpFlags flags;
  flags.shell_job = opts.shell_job;
  flags.ext_unix_sk = opts.ext_unix_sk;
  flags.tcp_established = opts.tcp_established;
  flags.tcp_close = opts.tcp_close;
  flags.skip_in_flight = opts.skip_in_flight || opts.tcp_close;
  CKPT_TRY(files::dump(ctx, flags));
  clock.mark("files");
  CKPT_TRY(seccomp::dump(ctx));
  clock.mark("seccomp");
  CKPT_TRY_ASSIGN(plan, memory::prepare(ctx, snapshot));
  clock.mark("memory plan");
  return {};
}

// The processes of one dump: the target and every descendant, each with its own context.
// Process i is attached, read and let go by member i mod size of the crew (TracerCrew).
struct Tree {
  std::vector<std::unique_ptr<DumpContext>> procs;  // [0] is the target
  std::vector<int> parent;                          // index of each one's parent, -1 for [0]
  TreeState state;
  TracerCrew* crew = nullptr;
  const pre_copy::PreCopy* pre = nullptr;  // a pre-copy dump's copies

  size_t member(size_t i) const { return i % crew->size(); }
  size_t index(const DumpContext* ctx) const {
    size_t i = 0;
    while (procs[i].get() != ctx) ++i;
    return i;
  }
  Status on_member(size_t i, std::function<Status()> job) {
    return crew->run(member(i), std::move(job));
  }
  // TracerCrew::share() over processes `which`; the results by process index.
  std::vector<Status> on_members(const std::vector<size_t>& which,
                                 const std::function<Status(size_t)>& job, bool stop = true) {
    auto done = crew->share(which, job, stop);
    std::vector<Status> result(procs.size());
    for (size_t j = 0; j < which.size(); ++j) result[which[j]] = std::move(done[j]);
    return result;
  }
  // on_members() for every process in creation order; the first failure in that order.
  Status on_all(const std::function<Status(size_t)>& job) {
    std::vector<size_t> order;
    for (auto* ctx : creation_order()) order.push_back(index(ctx));
    auto result = on_members(order, job);
    for (size_t i : order) CKPT_TRY(result[i]);
    return {};
  }
  // Detaches every thread from the thread that attached it (ptrace answers no other).
  void let_go() {
    (void)on_all([&](size_t i) {
      procs[i]->threads.clear();
      return Status{};
    });
  }

  bool has(pid_t pid) const {
    return std::any_of(procs.begin(), procs.end(), [&](auto& p) { return p->pid == pid; });
  }
  void add(pid_t pid, int parent_index) {
    auto ctx = std::make_unique<DumpContext>();
    ctx->pid = pid;
    ctx->section_prefix = section_prefix(pid, procs.empty());
    ctx->tree = &state;
    ctx->tracer_cpu = crew->cpu(member(procs.size()));
    procs.push_back(std::move(ctx));
    parent.push_back(parent_index);
  }
  // Parents before children, children by PID: the order restore creates them in.
  std::vector<DumpContext*> creation_order() const {
    std::vector<DumpContext*> out;
    visit(0, out);
    return out;
  }

 private:
  void visit(int i, std::vector<DumpContext*>& out) const {
    out.push_back(procs[i].get());
    std::vector<int> kids;
    for (size_t k = 0; k < procs.size(); ++k)
      if (parent[k] == i) kids.push_back(static_cast<int>(k));
    std::sort(kids.begin(), kids.end(),
              [&](int a, int b) { return procs[a]->pid < procs[b]->pid; });
    for (int k : kids) visit(k, out);
  }
};

// A child that ends while it is being stopped is a zombie once its exit is through (its parent
// is stopped and cannot reap it): it is saved as one.
bool ended_meanwhile(pid_t pid) {
  for (int i = 0; i < 100; ++i) {
    auto st = proc::read_status(pid);
    if (!st.ok()) return false;
    if (st->state == 'Z') return true;
    ::usleep(1000);
  }
  return false;
}

// The dumper and the processes it runs below (the ckpt command, the shell that started it):
// stopping any of them would stop the dump itself.
std::vector<pid_t> own_line() {
  std::vector<pid_t> line{::getpid()};
  for (int i = 0; i < 64 && line.back() > 1; ++i) {
    auto st = proc::read_stat(line.back());
    if (!st.ok()) break;
    line.push_back(st->ppid);
  }
  return line;
}

// Adds the children of stopped process i to the tree.
Status add_children(Tree& tree, size_t i, const DumpOptions& opts, const std::vector<pid_t>& line) {
  pid_t pid = tree.procs[i]->pid;
  CKPT_TRY_ASSIGN(auto children, proc::list_children(pid));
  for (pid_t c : children) {
    if (std::find(opts.ignore_children.begin(), opts.ignore_children.end(), c) !=
            opts.ignore_children.end() ||
        tree.has(c))
      continue;
    if (std::find(line.begin(), line.end(), c) != line.end())
      return errorf("dump pid {}: ckpt itself runs below it (pid {}); dump it from outside",
                    opts.pid, c);
    CKPT_TRY_ASSIGN(auto state, tree::check_child(pid, c));
    tree.add(c, static_cast<int>(i));
    tree.procs.back()->zombie = state == tree::ChildState::zombie;
  }
  return {};
}

// Stops the target, then its children, level by level, until every process of the tree is
// stopped: a stopped process creates no children, so its list is final once it is stopped. The
// processes of a level are stopped at once, each by its member. `line` is own_line().
Status freeze_tree(Tree& tree, const DumpOptions& opts, const std::vector<pid_t>& line) {
  tree.state.root = opts.pid;
  tree.add(opts.pid, -1);
  for (size_t first = 0; first < tree.procs.size();) {
    size_t end = tree.procs.size();
    std::vector<size_t> level;
    for (size_t i = first; i < end; ++i)
      if (!tree.procs[i]->zombie) level.push_back(i);
    auto frozen = tree.on_members(
        level, [&](size_t i) { return freeze(*tree.procs[i]); }, false);
    for (size_t i : level) {
      DumpContext& ctx = *tree.procs[i];
      if (!frozen[i].ok() && i > 0 && ended_meanwhile(ctx.pid)) {
        (void)tree.on_member(i, [&] {
          ctx.threads.clear();
          return Status{};
        });
        ctx.zombie = true;
        continue;
      }
      CKPT_TRY(frozen[i]);
      if (i == 0) CKPT_TRY(tree::check_root(ctx.pid));
      CKPT_TRY(add_children(tree, i, opts, line));
    }
    first = end;
  }
  return {};
}

// Resource errors begin with "pid N: " (they read alone too); under "dump pid N" it is said once.
Error dump_error(const Error& e, pid_t pid) {
  Error out = e;
  std::string own = fmt::format("pid {}: ", pid);
  if (out.message.starts_with(own)) out.message.erase(0, own.size());
  return out.wrap(fmt::format("dump pid {}", pid));
}

// What is left to do for a process's memory once everything else of it is read.
struct PendingMemory {
  memory::Plan plan;
  snapshot::Snapshot snap;  // when its private pages are read from a snapshot
  bool held = false;        // or when the few written since the parent were read while stopped
};

// The mappings with their VmFlags (resources/vm_flags.hpp): from the BPF iterator where ckpt
// has it, else those read before the freeze while they still hold, else smaps now. Processes
// read at once each take their own entry.
Status read_maps(DumpContext& ctx) {
  CKPT_TRY_ASSIGN(auto fast, vm_flags::read_fast(ctx.pid));
  if (fast) {
    ctx.maps = std::move(*fast);
    ctx.flags_fast = true;
    return {};
  }
  auto early = ctx.tree->early_maps.find(ctx.pid);
  if (early != ctx.tree->early_maps.end()) {
    CKPT_TRY_ASSIGN(auto adopted, vm_flags::adopt_early(ctx.pid, std::move(early->second)));
    if (adopted) {
      ctx.maps = std::move(*adopted);
      ctx.flags_early = true;
      return {};
    }
  }
  CKPT_TRY_ASSIGN(ctx.maps, proc::read_smaps(ctx.pid));
  return {};
}

// The part of a process's state that is its own (dump_own_resources).
Status dump_own(DumpContext& ctx, image::GenerationWriter* writer, const DumpOptions& opts) {
  ctx.rec.pid = ctx.pid;
  if (ctx.zombie) {
    CKPT_TRY_ASSIGN(ctx.rec.zombie, tree::dump_zombie(ctx.pid));
    return {};
  }
  ctx.writer = writer;
  PhaseClock clock(ctx.pid);
  CKPT_TRY(read_maps(ctx));
  clock.mark(ctx.flags_fast    ? "maps (flags from the iterator)"
             : ctx.flags_early ? "maps (flags read early)"
                               : "smaps");
  CKPT_TRY_ASSIGN(ctx.syscall_insn, find_syscall_insn(ctx));
  clock.mark("vdso");
  // First of all: until then a signal the dump took from a thread is only held by ckpt.
  if (Status st = signals::put_back_taken(ctx); !st.ok()) return dump_error(st.error(), ctx.pid);
  ctx.write_tracked = write_tracking::follows(opts.tracker, ctx.pid) || ctx.pre_copied;
  if (Status st = dump_own_resources(ctx, clock); !st.ok()) return dump_error(st.error(), ctx.pid);
  return {};
}

// The rest (dump_shared_resources), once dump_own() is through.
Status dump_shared(DumpContext& ctx, const DumpOptions& opts, PendingMemory& pending) {
  if (ctx.zombie) return {};
  PhaseClock clock(ctx.pid);
  Status st =
      dump_shared_resources(ctx, opts, pending.plan, opts.leave_running && opts.snapshot, clock);
  if (!st.ok()) return dump_error(st.error(), ctx.pid);
  if (opts.tracker) {
    const auto& parent = ctx.tree->pages->parent;
    write_tracking::renew(ctx, *opts.tracker, parent ? parent->gen.id : "");
  }
  return {};
}

// Everything of every process but the private pages of those that get a snapshot.
Status read_tree(Tree& tree, image::GenerationWriter* writer, const DumpOptions& opts,
                 std::vector<PendingMemory>& pending) {
  pending.resize(tree.procs.size());
  CKPT_TRY(tree.on_all([&](size_t i) { return dump_own(*tree.procs[i], writer, opts); }));
  auto procs = tree.creation_order();
  std::vector<size_t> order;
  for (auto* ctx : procs) order.push_back(tree.index(ctx));
  auto shared = tree.crew->in_turn(
      order, [&](size_t i) { return dump_shared(*tree.procs[i], opts, pending[i]); });
  for (auto& st : shared) CKPT_TRY(st);
  PhaseClock clock(opts.pid);
  Status linked = tree::dump_ids(procs);
  if (linked.ok()) linked = files::link(procs);
  if (linked.ok()) linked = memory::check_not_shared_between(procs);
  if (linked.ok()) linked = sysv_ipc::dump(procs);
  if (linked.ok()) linked = namespaces::dump(procs);
  clock.mark("tree links, sysv ipc, namespaces");
  if (!linked.ok()) return dump_error(linked.error(), opts.pid);
  return {};
}

// The snapshot process goes to the nearest child subreaper above the process, or else to the
// init of its PID namespace: one inside the tree would see it as a child of its own.
bool subreaper_on_line(const Tree& tree, size_t i) {
  for (int k = static_cast<int>(i); k >= 0; k = tree.parent[k])
    if (tree.procs[k]->rec.task.child_subreaper.value_or(false) || tree.procs[k]->pid == 1)
      return true;
  return false;
}

// Reads the pages process i wrote since its parent generation or its pre-copy, when they are few
// (memory::hold_changed); p.held says whether it did.
Status hold_changed(Tree& tree, size_t i, PendingMemory& p) {
  DumpContext& ctx = *tree.procs[i];
  PhaseClock clock(ctx.pid);
  if (tree.pre && ctx.pre_copied) {
    tree.pre->find_unchanged(ctx);
    clock.mark("pre-copy: unwritten pages");
  }
  if (ctx.unchanged.empty()) return {};
  // Pages shared with the root since a fork are the root's to save (both are stopped).
  if (ctx.pre_copied && i != 0)
    CKPT_TRY(memory::leave_out_shared_with_root(*tree.procs[0], tree.procs[0]->pid, ctx, ctx.pid,
                                                p.plan));
  CKPT_TRY_ASSIGN(p.held, memory::hold_changed(ctx, p.plan));
  // A snapshot compares with the root's snapshot instead (copy_from_snapshots).
  if (!p.held)
    for (auto& item : p.plan.items) item.from_root.clear();
  clock.mark("written pages read");
  return {};
}

// Takes a snapshot of each process that can have one and wrote too much since its parent or its
// pre-copy to have those pages read now (hold_changed); the others have their pages copied now,
// while they are stopped.
Status snapshot_or_copy(Tree& tree, std::vector<PendingMemory>& pending) {
  size_t n = tree.procs.size();
  std::vector<char> wants(n, 0);  // not vector<bool>: members write it at once
  for (size_t i = 0; i < n; ++i) {
    DumpContext& ctx = *tree.procs[i];
    PendingMemory& p = pending[i];
    if (ctx.zombie || !p.plan.snapshot) continue;
    if (subreaper_on_line(tree, i)) {
      log::warn("dump",
                "pid {}: a child subreaper or a PID namespace's init in the tree: copying its "
                "memory stopped",
                ctx.pid);
      p.plan.snapshot = false;
      continue;
    }
    wants[i] = true;
  }
  // On all members at once: each reads its processes' written pages.
  Status held = tree.on_all([&](size_t i) -> Status {
    if (!wants[i]) return {};
    Status st = hold_changed(tree, i, pending[i]);
    if (st.ok() && pending[i].held) wants[i] = false;
    return st.ok() ? st : dump_error(st.error(), tree.procs[i]->pid);
  });
  CKPT_TRY(held);
  // The snapshots, several at once; a process without one is copied below instead.
  std::vector<std::optional<Error>> refused(n);
  (void)tree.on_all([&](size_t i) -> Status {
    if (!wants[i]) return {};
    PhaseClock clock(tree.procs[i]->pid);
    auto snap = snapshot::take(*tree.procs[i]);
    clock.mark("snapshot");
    if (snap.ok())
      pending[i].snap = std::move(*snap);
    else
      refused[i] = snap.error();
    return {};
  });
  for (size_t i = 0; i < n; ++i) {
    DumpContext& ctx = *tree.procs[i];
    PendingMemory& p = pending[i];
    if (ctx.zombie || p.held || p.snap) continue;
    if (refused[i])
      log::warn("dump", "pid {}: no snapshot ({}); copying its memory stopped", ctx.pid,
                refused[i]->message);
    Status st = ctx.flags_early ? vm_flags::check_now(ctx.pid, ctx.maps) : Status{};
    if (st.ok() && i != 0)
      st = memory::leave_out_shared_with_root(*tree.procs[0], tree.procs[0]->pid, ctx, ctx.pid,
                                              p.plan);
    if (st.ok()) st = memory::write_pages(ctx, p.plan, ctx.pid);
    if (!st.ok()) return dump_error(st.error(), ctx.pid);
  }
  return {};
}

// The check that the flags read early still stand (vm_flags.hpp), on a thread of its own beside
// the copy: it reads smaps, whose walk of every page table entry (10-15 ms per GiB here) needs
// nothing the copy does. Without a thread to be had (RLIMIT_NPROC) it runs at get().
std::future<Status> check_flags_beside(const DumpContext& ctx, const PendingMemory& p) {
  if (!ctx.flags_early) return std::async(std::launch::deferred, [] { return Status{}; });
  pid_t pid = ctx.pid, snap = p.snap ? p.snap.pid() : 0;
  const std::vector<proc::MapEntry>* maps = &ctx.maps;
  auto check = [pid, snap, maps] {
    return snap ? vm_flags::check_at_fork(pid, *maps, snap) : vm_flags::check_kept(pid, *maps);
  };
  try {
    return std::async(std::launch::async, check);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, check);
  }
}

// Stored once (cow_shared.hpp), compared with the root's snapshot, which is therefore killed last;
// a root copied while stopped has no frames left to compare with. Snapshots are killed once
// copied and reaped with `pending`.
Status copy_from_snapshots(Tree& tree, std::vector<PendingMemory>& pending) {
  pid_t root_snap = pending[0].snap ? pending[0].snap.pid() : 0;
  for (size_t i = 0; i < tree.procs.size(); ++i) {
    PendingMemory& p = pending[i];
    if (!p.snap && !p.held) continue;
    fault::point("snapshot", "copy");
    auto started = Clock::now();
    DumpContext& ctx = *tree.procs[i];
    // Held pages were read from the process itself: its flags count only for what the image
    // records, and reading its smaps (a walk of every page table entry) waits until it runs again
    // (vm_flags::check_kept says what that misses).
    std::future<Status> flags = check_flags_beside(ctx, p);
    Status st = {};
    if (i != 0 && root_snap != 0 && p.snap)
      st = memory::leave_out_shared_with_root(*tree.procs[0], root_snap, ctx, p.snap.pid(), p.plan);
    if (st.ok()) st = memory::write_pages(ctx, p.plan, p.held ? ctx.pid : p.snap.pid());
    // Flags that moved come first: the caller dumps again on them (vm_flags::kFlagsMoved).
    if (Status checked = flags.get(); !checked.ok()) st = checked;
    if (!st.ok()) return dump_error(st.error(), ctx.pid);
    auto copied = Clock::now();
    if (p.held) {
      log::info("dump", "pid {}: pages read while stopped written in {:.1f} ms", ctx.pid,
                ms(copied - started));
      continue;
    }
    if (i != 0) p.snap.kill_now();
    log::info("dump", "pid {}: pages copied from its snapshot in {:.1f} ms", ctx.pid,
              ms(copied - started));
  }
  pending[0].snap.kill_now();
  return {};
}

Status finish_image(Tree& tree, image::GenerationWriter* writer, const DumpOptions& opts) {
  auto procs = tree.creation_order();
  size_t threads = 0;
  for (auto* ctx : procs) {
    threads += ctx->rec.threads.size();
    if (ctx->zombie) continue;
    log::info("dump", "pid {}: {} threads, {} mappings, {} bytes of pages, {} fds", ctx->pid,
              ctx->rec.threads.size(), ctx->rec.memory.vmas.size(), ctx->rec.memory.page_bytes,
              ctx->rec.fds.size());
  }
  writer->set_label("kind", "process");
  writer->set_label("pid", std::to_string(opts.pid));
  writer->set_label("threads", std::to_string(threads));
  writer->set_label("processes", std::to_string(procs.size()));
  if (auto exe = proc::read_proc_link(opts.pid, "exe"); exe.ok()) writer->set_label("exe", *exe);
  schema::ImageRoot& image = tree.state.image;
  image.ckpt_version = CKPT_VERSION_STRING;
  image.root_pid = opts.pid;
  image.shell_job = opts.shell_job;
  if (opts.pid == 1) image.ns_last_pid = ns_init::last_pid_before_us();
  for (auto* ctx : procs) image.processes.push_back(std::move(ctx->rec));
  return writer->write_section(schema::kProcessSection, schema::encode_image(image));
}

// A dump that says it killed has killed: the kill is checked (dump/kill.hpp).
Status kill_tree(Tree& tree) {
  std::vector<KillTarget> targets;
  for (auto& p : tree.procs) {
    KillTarget t{p->pid, {}};
    for (auto& th : p->threads) t.traced.push_back(th.tid);
    targets.push_back(std::move(t));
  }
  // When one survived, the threads stay ours to detach (the destructors do): it runs on.
  CKPT_TRY(kill_and_wait(targets));
  for (auto& p : tree.procs) {
    for (auto& t : p->threads) t.tracee.release();
    p->threads.clear();
  }
  return {};
}

// Bytes of written pages read while the processes were stopped (memory::hold_changed); the next
// incremental dump backs that much memory before its freeze (ParentLookup).
constexpr std::string_view kHeldBytesLabel = "held_bytes";

// Labels an incremental generation with its parent and says how much it saved.
void finish_incremental(const page_index::DumpState& pages, image::GenerationWriter* writer) {
  if (!pages.parent) return;
  const auto& parent = pages.parent->gen;
  writer->set_label(std::string(image::kParentLabel), parent.id);
  writer->set_label(std::string(image::kParentIndexLabel),
                    fmt::format("{:016x}", image::page_index_digest(parent)));
  writer->set_label("pages_changed", fmt::format("{}/{}", pages.changed, pages.pages));
  if (pages.held > 0) writer->set_label(std::string(kHeldBytesLabel), std::to_string(pages.held));
  if (pages.unread > 0) {
    writer->set_label("pages_unread", std::to_string(pages.unread));
    log::info("dump",
              "incremental: {} of {} pages changed, {} known unchanged by write tracking (not "
              "read), parent {}",
              pages.changed, pages.pages, pages.unread, parent.id);
    return;
  }
  log::info("dump", "incremental: {} of {} pages changed (page hashes), parent {}", pages.changed,
            pages.pages, parent.id);
}

// Labels a pre-copy dump's generation with what was copied before the freeze, what was read
// while frozen and how many processes wrote too much meanwhile and got a snapshot after all.
void finish_pre_copy(const pre_copy::PreCopy& pre, const page_index::DumpState& pages,
                     size_t snapshots, image::GenerationWriter* writer) {
  writer->set_label("pre_copied_bytes", std::to_string(pre.bytes()));
  if (pages.held > 0) writer->set_label(std::string(kHeldBytesLabel), std::to_string(pages.held));
  writer->set_label("pre_copy_snapshots", std::to_string(snapshots));
  log::info("dump",
            "pre-copy: {} bytes of {} processes copied in {:.1f} ms while they ran (each stopped "
            "at most {:.2f} ms for it), {} bytes written meanwhile read while frozen, {} "
            "processes with a snapshot",
            pre.bytes(), pre.processes(), ms(pre.took()), ms(pre.longest_stop()), pages.held,
            snapshots);
}

// The processes of the tree now (those born before the freeze are found by it).
constexpr size_t kMostProcessesFound = 4096;
std::vector<pid_t> processes_now(pid_t root) {
  std::vector<pid_t> found, todo{root};
  while (!todo.empty() && found.size() < kMostProcessesFound) {
    pid_t pid = todo.back();
    todo.pop_back();
    found.push_back(pid);
    if (auto kids = proc::list_children(pid); kids.ok())
      todo.insert(todo.end(), kids->begin(), kids->end());
  }
  return found;
}

// While the processes still run: what the freeze will then only compare (vm_flags.hpp), for
// those whose flags the iterator cannot read (then they are read at the freeze).
void read_flags_early(Tree& tree, const std::vector<pid_t>& found) {
  for (pid_t pid : found) {
    if (auto fast = vm_flags::read_fast(pid); fast.ok() && *fast) continue;
    if (auto maps = vm_flags::read_early(pid); maps.ok())
      tree.state.early_maps.emplace(pid, std::move(*maps));
  }
  fault::point("memory", "flags read early");
}

// While the threads still sleep where a stop would hide: the calls those in restart_syscall
// resume (threads::resumed_calls).
void note_resumed_calls(Tree& tree, const std::vector<pid_t>& found) {
  for (pid_t pid : found) tree.state.resumed_calls.merge(threads::resumed_calls(pid));
}

// The generation an incremental dump builds on, looked up on a thread of its own while the dump
// gets ready: reading and checking the parent's page index (4 MiB per GiB of memory) took 10-17 ms
// here, as long as reading the flags early, and the two now overlap.
class ParentLookup {
 public:
  // Starts the lookup for an incremental dump; a full dump has none.
  ParentLookup(const image::Store& store, const DumpOptions& opts) {
    if (!opts.incremental) return;
    found_ = std::async(std::launch::async, [&store, pid = opts.pid, this] {
      auto exe = proc::read_proc_link(pid, "exe");
      auto parent = page_index::find_parent(store, pid, exe.ok() ? *exe : "", &why_);
      if (parent) back_held_room(*parent);
      return parent;
    });
  }
  ParentLookup(const ParentLookup&) = delete;
  ParentLookup& operator=(const ParentLookup&) = delete;

  // Waits for the lookup, the first time; nothing for a full dump.
  void into(page_index::DumpState& pages) {
    if (!found_.valid()) return;
    pages.parent = found_.get();
    pages.held_room = std::move(held_room_);
    if (!pages.parent) log::info("dump", "incremental: {}; a full dump", why_);
  }

 private:
  // Backing the memory that the pages read during the freeze go to took 2-15 ms of a 1 GiB
  // freeze here (memory::hold_changed); it is done now, as much as the parent read, and more.
  void back_held_room(const page_index::Parent& parent) {
    auto label = parent.gen.labels.find(std::string(kHeldBytesLabel));
    if (label == parent.gen.labels.end()) return;
    std::optional<uint64_t> held = proc::parse_u64(label->second);
    if (!held || *held == 0) return;
    uint64_t room = std::min(*held + *held / 4 + (1 << 20), memory::kMaxHeld);
    held_room_ = std::make_unique<BackedArena>(room);
  }

  // Before found_, whose end waits for the thread that writes them.
  std::string why_;
  std::unique_ptr<BackedArena> held_room_;
  std::future<std::optional<page_index::Parent>> found_;
};

Result<DumpResult> dump_tree(image::GenerationWriter* writer, const DumpOptions& opts,
                             Clock::time_point started, page_index::DumpState& pages,
                             ParentLookup& parent) {
  PhaseClock early("dump", fmt::format("pid {}: before the freeze", opts.pid));
  std::vector<pid_t> found = processes_now(opts.pid);
  // Free to run on any CPU while the copy runs on this thread's.
  writer->start_write_behind();
  // Before the tree: its members outlive every attachment (a tracer thread's end detaches). One
  // process needs no thread.
  TracerCrew crew(TracerCrew::members_for(found.size()));
  // Until the processes go on: each is pinned to its member's CPU as it is stopped.
  std::vector<CpuPin> crew_pins = crew.pin_members();
  // Before the tree, whose contexts point into it.
  std::optional<pre_copy::PreCopy> pre;
  const std::vector<pid_t> line = own_line();
  // A pre-copy is for full dumps only.
  if (opts.pre_copy) parent.into(pages);
  if (opts.pre_copy && opts.leave_running && opts.snapshot && !opts.tracker && !pages.parent) {
    // Not ckpt itself or what it runs below: the freeze refuses those with a message.
    std::vector<pid_t> others;
    for (pid_t pid : found)
      if (std::find(line.begin(), line.end(), pid) == line.end()) others.push_back(pid);
    pre = pre_copy::PreCopy::take(others, crew);
  }
  Tree tree;
  tree.crew = &crew;
  tree.pre = pre ? &*pre : nullptr;
  if (opts.leave_running && opts.snapshot && opts.early_flags) read_flags_early(tree, found);
  note_resumed_calls(tree, found);
  early.mark("tracer crew, pre-copy, flags read early");
  parent.into(pages);
  early.mark("parent generation");
  tree.state.pages = &pages;
  struct LetGo {  // on any return, every thread is detached by the member that attached it
    Tree& tree;
    ~LetGo() { tree.let_go(); }
  } let_go{tree};
  // Declared after the tree: on any error its end takes the connections out of repair mode
  // before the tree's end lets the processes go.
  fds::TcpRepairScope tcp_repair;
  ByteProgress progress(opts.progress);
  tree.state.progress = &progress;
  if (opts.tcp_established) fds::netlock::preload();
  // From here every error path detaches the threads (ThreadHandle owns the attachment).
  auto frozen_at = Clock::now();
  CKPT_TRY(freeze_tree(tree, opts, line));
  log::info("dump", "froze {} processes in {:.1f} ms", tree.procs.size(),
            ms(Clock::now() - frozen_at));
  if (pre)
    for (auto& p : tree.procs) p->pre_copied = pre->find(p->pid);
  if (opts.on_frozen) opts.on_frozen();
  std::vector<PendingMemory> pending;
  CKPT_TRY(read_tree(tree, writer, opts, pending));
  auto read_at = Clock::now();
  CKPT_TRY(snapshot_or_copy(tree, pending));
  size_t snapshots = 0;
  for (auto& p : pending) snapshots += p.snap ? 1 : 0;
  log::info("dump", "state read in {:.1f} ms, snapshots or stopped copies in {:.1f} ms",
            ms(read_at - frozen_at), ms(Clock::now() - read_at));
  PhaseClock clock(opts.pid);
  for (auto& p : tree.procs) CKPT_TRY(check_still_stopped(*p));
  clock.mark("stop check");
  if (opts.on_memory_read) opts.on_memory_read();
  DumpResult result;
  // Everything is read or held by snapshots: processes that go on need not wait for the copy
  // from the snapshots or the fsyncs of the commit.
  if (opts.leave_running) {
    tree.let_go();
    result.frozen = Clock::now() - frozen_at;
    clock.mark("release");
    crew_pins.clear();
    // The connections left repair mode as soon as they were read; their lock goes once the
    // program runs (each removal waits an RCU grace period, 10-25 ms here), and their packets
    // wait meanwhile as in any short outage.
    tcp_repair.release();
  }
  fault::point("dump", "tree plan");
  if (Status planned = tree::dump_plan(tree.creation_order()); !planned.ok())
    return dump_error(planned.error(), opts.pid);
  CKPT_TRY(copy_from_snapshots(tree, pending));
  finish_incremental(pages, writer);
  if (pre) finish_pre_copy(*pre, pages, snapshots, writer);
  PhaseClock after("dump", fmt::format("pid {}: after the copy", opts.pid));
  CKPT_TRY(finish_image(tree, writer, opts));
  after.mark("image written");
  auto gen = writer->commit();
  if (!gen.ok()) return gen.error().wrap(fmt::format("dump pid {}", opts.pid));
  after.mark("committed");
  // Killed once copied: their ends overlapped the image's end and commit, and count in the total.
  for (auto& p : pending) p.snap.end();
  after.mark("snapshots ended");
  if (!opts.leave_running && opts.kill_from_outside) {
    // The TCP lock would go with the dumper, which dies with the namespace.
    if (tcp_repair.any())
      return errorf(
          "dump pid {}: saved as generation {}, but not killed: the TCP connections of a tree in "
          "its own PID namespace cannot be kept locked once it is killed; dump it with "
          "--leave-running and stop it yourself",
          opts.pid, gen->id);
    result.generation = *gen;
    result.frozen = Clock::now() - frozen_at;
    result.total = Clock::now() - started;
    Status why = opts.kill_from_outside(result);
    return errorf("dump pid {}: saved as generation {}, but not killed: {}", opts.pid, gen->id,
                  why.ok() ? "no answer" : why.error().message);
  }
  if (!opts.leave_running) {
    if (Status ready = tcp_repair.before_kill(); !ready.ok())
      return errorf("dump pid {}: saved as generation {}, but not killed: {}", opts.pid, gen->id,
                    ready.error().message);
    // A survivor runs on: its connections leave repair mode and the lock goes (tcp_repair).
    if (Status killed = kill_tree(tree); !killed.ok())
      return errorf("dump pid {}: saved as generation {}, but {}", opts.pid, gen->id,
                    killed.error().message);
    tcp_repair.keep_locked();
    after.mark("killed");
    result.frozen = Clock::now() - frozen_at;
  }
  result.generation = std::move(*gen);
  result.total = Clock::now() - started;
  return result;
}

Result<DumpResult> dump_here(image::Store& store, DumpOptions opts) {
  auto started = Clock::now();
  CKPT_TRY(check_target(opts));
  // For comparisons (bench/freeze_bench, tests): the whole dump with the processes stopped, and
  // the VmFlags read while they are (vm_flags.hpp).
  if (const char* off = ::getenv("CKPT_NO_SNAPSHOT"); off && std::string_view(off) == "1")
    opts.snapshot = false;
  if (const char* off = ::getenv("CKPT_NO_EARLY_FLAGS"); off && std::string_view(off) == "1")
    opts.early_flags = false;
  // Before the freeze, like the generation's files: it costs the process nothing then.
  page_index::DumpState pages;
  PhaseClock clock("dump", fmt::format("pid {}: before the freeze", opts.pid));
  ParentLookup parent(store, opts);
  CKPT_TRY_ASSIGN(auto writer, store.begin_generation(opts.write));
  clock.mark("generation begun");
  return dump_tree(writer.get(), opts, started, pages, parent);
}

// The dumper's answer to its parent, on a SEQPACKET channel: first one message per process whose
// write tracking it renewed ("track ...", with the userfaultfd), then one line, "ok ID FROZEN_NS
// TOTAL_NS" or "err ERRNO MESSAGE".
void report(int fd, const Result<DumpResult>& r, const DumpOptions& opts) {
  if (opts.tracker) {
    for (auto& [pid, e] : opts.tracker->entries()) {
      if (!e.renewed) continue;
      std::string m = write_tracking::Tracker::encode(pid, e);
      int uffd = e.uffd.get();
      (void)send_with_fds(fd, m.data(), m.size(), std::span(&uffd, 1), "dump: report");
    }
  }
  std::string line =
      r.ok() ? fmt::format("ok {} {} {}\n", r->generation.id, r->frozen.count(), r->total.count())
             : fmt::format("err {} {}\n", r.error().errnum, r.error().message);
  (void)send_with_fds(fd, line.data(), line.size(), {}, "dump: report");
}

// One message of the dumper and the fd that came with it, if any. Empty at end of file.
std::string receive(int channel, ScopedFd* fd) {
  std::string buf(64 << 10, '\0');
  int got = -1;
  ssize_t n = receive_with_fd(channel, buf.data(), buf.size(), &got);
  fd->reset(got);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

Result<DumpResult> parse_report(const image::Store& store, const std::string& line) {
  std::istringstream in(line);
  std::string word;
  in >> word;
  if (word == "err") {
    int errnum = 0;
    in >> errnum;
    std::string message;
    std::getline(in >> std::ws, message);
    return make_error(message, errnum);
  }
  DumpResult r;
  std::string id;
  int64_t frozen = 0, total = 0;
  if (word != "ok" || !(in >> id >> frozen >> total))
    return errorf("dump: the dumper process ended without an answer");
  CKPT_TRY_ASSIGN(r.generation, store.find(id));
  r.frozen = std::chrono::nanoseconds(frozen);
  r.total = std::chrono::nanoseconds(total);
  return r;
}

// The dumper: a child in a process group of its own, in the namespace `ns` when there is one.
Result<pid_t> fork_dumper(image::Store& store, const DumpOptions& opts, ns_init::Entry* ns,
                          ScopedFd& read_end, ScopedFd& write_end, CpuPinLedger& pins) {
  if (ns) CKPT_TRY(ns->enter_for_children());
  pid_t child = ::fork();
  int fork_errno = errno;
  if (child == 0) {
    // Out of the caller's group, which a Ctrl-C or a job's kill reaches, and deaf to what its
    // terminal could send it still. Not a session of its own (setsid): a new session gets a new
    // autogroup, and while other tasks kept both CPUs busy Linux 6.18 here gave a new autogroup
    // almost no CPU: a dump waited 2-11 s runnable, 100 ms of work took over 20 s.
    ::setpgid(0, 0);
    for (int sig : {SIGHUP, SIGTTIN, SIGTTOU}) ::signal(sig, SIG_IGN);
    // Inside the program's PID namespace its thread ids are not those the parent sees.
    if (ns)
      turn_off_cpu_pinning();
    else
      pins.use_here();
    ::signal(SIGPIPE, SIG_IGN);
    read_end.reset();
    DumpOptions mine = opts;
    Status inside = ns ? ns->settle_inside(mine, write_end.get()) : Status{};
    Result<DumpResult> r = make_error("dump: internal error");
    try {
      r = inside.ok() ? dump_here(store, mine) : Result<DumpResult>(inside.error());
    } catch (const std::exception& e) {
      // A malformed value from /proc must not kill the dumper while it holds the threads.
      r = errorf("dump pid {}: internal error: {}", opts.pid, e.what());
    }
    report(write_end.get(), r, mine);
    ::_exit(0);
  }
  if (ns) ns->leave();
  if (child < 0) return sys_error(fork_errno, "dump: fork");
  return child;
}

// The dumper in a namespace saved the tree and asks us to kill it (ns_init.hpp): its "kill"
// line, answered with the kill; the dumper, which dies with the namespace or gives up once told
// why not, is reaped here. Returns the report line the dump stands by.
std::string kill_for_dumper(ns_init::Entry& ns, pid_t dumper, int channel, const std::string& m) {
  std::string line = m.substr(0, m.find('\n'));
  Status killed = ns.kill();
  if (!killed.ok()) {
    const std::string& why = killed.error().message;
    (void)::send(channel, why.data(), why.size(), MSG_NOSIGNAL);
  }
  (void)wait_end(dumper);
  if (killed.ok()) killed = ns.wait_dead();
  if (killed.ok()) return "ok " + line.substr(5);
  std::istringstream in(line.substr(5));
  std::string id;
  in >> id;
  return fmt::format("err 0 dump pid {}: saved as generation {}, but not killed: {}", ns.pid(), id,
                     killed.error().message);
}

}  // namespace

// The dump runs in a child process of its own process group. If the caller is killed (SIGKILL, or
// Ctrl-C to its process group) in the middle, the dumper still finishes or fails cleanly, so the
// target is never left stopped, traced or with borrowed registers.
namespace {
Result<DumpResult> dump_once(image::Store& store, const DumpOptions& opts) {
  CKPT_TRY_ASSIGN(std::optional<ns_init::Entry> ns, ns_init::Entry::of(opts.pid));
  int p[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
    return sys_error("dump: socketpair");
  ScopedFd read_end(p[0]), write_end(p[1]);
  CpuPinLedger pins = CpuPinLedger::create();
  // Here, not in the dumper, so that it is made once per process; its time counts in the total.
  auto prepared_at = Clock::now();
  vm_flags::prepare_fast();
  auto preparing = Clock::now() - prepared_at;
  CKPT_TRY_ASSIGN(pid_t child,
                  fork_dumper(store, opts, ns ? &*ns : nullptr, read_end, write_end, pins));
  write_end.reset();
  std::vector<std::pair<std::string, ScopedFd>> tracked;
  std::string line;
  bool reaped = false;
  for (;;) {
    ScopedFd fd;
    std::string m = receive(read_end.get(), &fd);
    if (ns && m.starts_with("kill ")) {
      line = kill_for_dumper(*ns, child, read_end.get(), m);
      reaped = true;
      break;
    }
    if (!m.starts_with("track ")) {
      line = m.substr(0, m.find('\n'));
      break;
    }
    tracked.emplace_back(std::move(m), std::move(fd));
  }
  if (!reaped) (void)wait_end(child);
  if (size_t n = pins.undo(); n > 0)
    log::warn("dump",
              "the dumper ended with {} threads of pid {} on its CPU: their own CPU masks given "
              "back",
              n, opts.pid);
  auto r = parse_report(store, line);
  if (r.ok()) r->total += preparing;
  if (opts.tracker) {
    opts.tracker->begin_round();
    for (auto& [m, fd] : tracked)
      opts.tracker->receive(m, std::move(fd), r.ok() ? r->generation.id : "");
    opts.tracker->finish_round();
  }
  // The dumper's messages name the PIDs inside ("pid 1"): say which process that was here.
  if (ns && !r.ok() && !reaped) return r.error().wrap(ns->describe());
  return r;
}

}  // namespace

// A dump whose early VmFlags a process changed before the freeze (vm_flags.hpp) is taken again
// at once, the flags then read while it is stopped; the first attempt left nothing in the store.
Result<DumpResult> dump_process(image::Store& store, const DumpOptions& opts) {
  auto r = dump_once(store, opts);
  if (r.ok() || !opts.early_flags || r.error().errnum != vm_flags::kFlagsMoved ||
      r.error().message.find(vm_flags::kFlagsMovedText) == std::string::npos)
    return r;
  log::warn("dump", "{}; dumping again with the flags read while stopped", r.error().message);
  DumpOptions again = opts;
  again.early_flags = false;
  return dump_once(store, again);
}

}  // namespace ckpt
