#include "restore/puppet.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <utility>

#include <fmt/ranges.h>

#include "proc/maps.hpp"
#include "proc/pid_namespace.hpp"
#include "proc/task.hpp"
#include "resources/fds/pty.hpp"
#include "resources/files.hpp"
#include "resources/memory.hpp"
#include "resources/namespaces.hpp"
#include "resources/process.hpp"
#include "resources/signals.hpp"
#include "resources/sysv_ipc.hpp"
#include "resources/tree.hpp"
#include "restore/spawn.hpp"

namespace ckpt {
namespace {

constexpr uint64_t kPage = 4096;

void report(int fd, const std::string& msg) {
  std::string line = msg + "\n";
  (void)!::write(fd, line.data(), line.size());
}

Status setup_inside(const PuppetPlan& plan, size_t index, HandedFds& handed) {
  const PuppetSpec& spec = plan.processes[index];
  CKPT_TRY(signals::reset_in_puppet());
  CKPT_TRY(files::restore_in_puppet(*plan.image, index, handed));
  CKPT_TRY(process::restore_in_puppet(*spec.rec, handed));
  CKPT_TRY(sysv_ipc::restore_in_puppet(*plan.image, spec.pid));
  if (plan.base) CKPT_TRY(memory::protect_kept_in_puppet(*spec.rec, *plan.base));
  void* page =
      ::mmap(reinterpret_cast<void*>(spec.trampoline), kPage, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (page == MAP_FAILED)
    return sys_error(fmt::format("mmap restorer page at {:#x}", spec.trampoline));
  std::memcpy(page, arch::kTrampolineCode, sizeof(arch::kTrampolineCode));
  return {};
}

// Every puppet holds the read end of `done`; its write end is closed in all but the root, which
// closes it once the whole tree exists: end of file then tells a puppet waiting to join a group
// led by a process created after it that its leader is there.
struct Pipes {
  std::vector<int> report;
  int done_read = -1, done_write = -1;  // done_write: -1 once closed
};

[[noreturn]] void puppet_main(const PuppetPlan& plan, size_t index, Pipes pipes, int created_fd);

// Creates the children of puppet `index` (the early ones, or the others) one after the other,
// each once the one before has created its own: a process group's leader then exists before any
// process joins it.
Status create_children(const PuppetPlan& plan, size_t index, const Pipes& pipes, bool early) {
  std::vector<pid_t> zombies;
  for (size_t child : plan.processes[index].children) {
    const PuppetSpec& spec = plan.processes[child];
    if (spec.tree.early != early) continue;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
    ScopedFd read_end(p[0]), write_end(p[1]);
    SpawnOptions opts{.helpers = true, .drop_sigchld = true, .close_in_helpers = pipes.done_write};
    CKPT_TRY_ASSIGN(pid_t pid, spawn_with_helpers(spec.pid, spec.tree, opts));
    if (pid == 0) puppet_main(plan, child, pipes, write_end.get());
    write_end.reset();
    char c = 0;
    while (::read(read_end.get(), &c, 1) < 0 && errno == EINTR) {
    }
    if (c != '1') return errorf("restore pid {}: its puppet failed", spec.pid);
    if (spec.zombie) zombies.push_back(pid);
  }
  return tree::settle_zombies(zombies);
}

// Blocks until the root has created the whole tree, then joins a group created after it.
Status join_late(const PuppetPlan& plan, size_t index, const Pipes& pipes) {
  const tree::TreePlan& t = plan.processes[index].tree;
  if (t.group == tree::GroupStep::late) {
    char c;
    while (::read(pipes.done_read, &c, 1) < 0 && errno == EINTR) {
    }
  }
  ::close(pipes.done_read);
  return tree::join_late_in_puppet(t, index == 0, plan.shell_job);
}

[[noreturn]] void puppet_main(const PuppetPlan& plan, size_t index, Pipes pipes, int created_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Only the root's copy is still open (its number may be reused elsewhere): -1 once closed.
  if (index != 0 && pipes.done_write >= 0) ::close(std::exchange(pipes.done_write, -1));
  const PuppetSpec& spec = plan.processes[index];
  Status st;
  if (index == 0 && plan.root_is_ns_init) st = proc::mount_own_proc();
  if (st.ok() && index == 0 && plan.image->uts) st = namespaces::make_uts(*plan.image->uts);
  if (st.ok() && index == 0 && plan.image->time_ns)
    st = namespaces::make_time(*plan.image->time_ns);
  if (st.ok()) st = create_children(plan, index, pipes, true);
  if (st.ok()) st = tree::join_in_puppet(spec.tree, index == 0, plan.shell_job);
  if (st.ok() && spec.zombie) {
    (void)!::write(created_fd, "1", 1);
    tree::end_as_zombie(*spec.rec->zombie);
  }
  auto handed_fd = [&](uint32_t id) { return plan.handed.find(files::handed_key(id)); };
  if (st.ok()) st = fds::take_controlling_terminal(*plan.image, spec.pid, handed_fd);
  if (st.ok()) st = create_children(plan, index, pipes, false);
  if (created_fd >= 0) (void)!::write(created_fd, st.ok() ? "1" : "0", 1);
  if (index == 0) ::close(std::exchange(pipes.done_write, -1));
  if (st.ok()) st = join_late(plan, index, pipes);
  HandedFds handed = plan.handed;
  handed.fds.push_back(pipes.report[index]);
  handed.keys.push_back("report");
  if (st.ok()) st = setup_inside(plan, index, handed);
  if (!st.ok()) {
    report(handed.fds.back(), "err " + st.error().message);
    ::_exit(1);
  }
  report(handed.fds.back(), fmt::format("ok {}", fmt::join(handed.fds, " ")));
  for (;;) ::pause();
}

Status read_report(int fd, pid_t pid, std::string& msg) {
  char c;
  for (;;) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read from the puppet");
    if (n == 0) return errorf("restore pid {}: the puppet died while setting up", pid);
    if (c == '\n') return {};
    msg.push_back(c);
  }
}

}  // namespace

uint64_t choose_trampoline(const schema::ProcessRecord& proc,
                           const std::vector<proc::MapEntry>& own) {
  auto used = memory::used_ranges(proc);
  for (auto& m : own) used.emplace_back(m.start, m.end);
  std::sort(used.begin(), used.end());
  uint64_t candidate = 0x10000000;
  for (auto& [s, e] : used) {
    if (e <= candidate) continue;
    if (s >= candidate + kPage) break;
    candidate = (e + kPage - 1) & ~(kPage - 1);
  }
  return candidate;
}

Result<SpawnedPuppets> PuppetTree::spawn(const PuppetPlan& plan) {
  // Every puppet is a fork of the restorer: the heap that decoding the image used and freed
  // would otherwise be copied into each (page tables, and faults on the first writes after).
  ::malloc_trim(0);
  SpawnedPuppets out;
  std::vector<ScopedFd> write_ends;
  Pipes pipes;
  for (size_t i = 0; i < plan.processes.size(); ++i) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
    out.reports.emplace_back(p[0]);
    write_ends.emplace_back(p[1]);
    pipes.report.push_back(p[1]);
  }
  int done[2];
  if (::pipe2(done, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd done_read(done[0]), done_write(done[1]);
  pipes.done_read = done[0];
  pipes.done_write = done[1];
  const PuppetSpec& root_spec = plan.processes[0];
  SpawnOptions opts{.helpers = !plan.shell_job, .drop_sigchld = false, .close_in_helpers = -1};
  // Every puppet blocks every signal from its first instant (they inherit the mask): a signal
  // sent to a restored PID while its process is built waits, and comes once it runs with its own
  // handlers and mask, instead of killing or missing the puppet, whose actions are the defaults.
  sigset_t all, caller;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &caller);
  auto root = spawn_with_helpers(root_spec.pid, root_spec.tree, opts);
  if (root.ok() && *root == 0) puppet_main(plan, 0, pipes, -1);
  ::pthread_sigmask(SIG_SETMASK, &caller, nullptr);
  if (!root.ok()) return root.error();
  // In the root's PID namespace the creator may see it under another PID.
  out.root = *root;
  return out;  // the write ends close: a puppet that dies before its report then reads as EOF
}

Result<PuppetTree> PuppetTree::take_over(const PuppetPlan& plan, SpawnedPuppets spawned) {
  PuppetTree tree;
  for (auto& p : plan.processes) tree.pids_.push_back(p.pid);
  tree.tracees_.resize(plan.processes.size());
  tree.kept_.resize(plan.processes.size());
  for (size_t i = 0; i < plan.processes.size(); ++i)
    if (!plan.processes[i].zombie) CKPT_TRY(tree.take_over_one(i, plan, spawned.reports[i].get()));
  return tree;
}

Result<PuppetTree> PuppetTree::create(const PuppetPlan& plan) {
  CKPT_TRY_ASSIGN(SpawnedPuppets spawned, spawn(plan));
  return take_over(plan, std::move(spawned));
}

// Waits for puppet i's report.
Status PuppetTree::take_over_one(size_t i, const PuppetPlan& plan, int report_fd) {
  pid_t pid = plan.processes[i].pid;
  std::string msg;
  CKPT_TRY(read_report(report_fd, pid, msg));
  if (msg.rfind("err ", 0) == 0) return errorf("restore pid {}: {}", pid, msg.substr(4));
  std::istringstream in(msg.substr(2));
  for (int fd; in >> fd;) kept_[i].push_back(fd);
  return {};
}

Status PuppetTree::seize(size_t i) {
  // PTRACE_O_TRACECLONE only while threads are created (threads::restore): without it, waits
  // for a single-threaded puppet's stops need not look at every other child (Tracee::wait_stop).
  CKPT_TRY_ASSIGN(tracees_[i],
                  ptrace::Tracee::seize(pids_[i], PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL));
  return tracees_[i].interrupt();
}

PuppetTree::PuppetTree(PuppetTree&& o) noexcept
    : pids_(std::move(o.pids_)), tracees_(std::move(o.tracees_)), kept_(std::move(o.kept_)) {
  o.pids_.clear();
}

PuppetTree::~PuppetTree() {
  if (pids_.empty()) return;
  for (pid_t pid : pids_) ::kill(pid, SIGKILL);
  for (size_t i = pids_.size(); i-- > 0;) {
    if (i < tracees_.size()) tracees_[i].release();
    // Threads we traced must be reaped one by one before their leader can be; the root is our
    // child, the others are reaped here as long as we trace them.
    if (auto tids = proc::list_threads(pids_[i]); tids.ok())
      for (pid_t tid : *tids)
        if (tid != pids_[i]) ::waitpid(tid, nullptr, __WALL);
    ::waitpid(pids_[i], nullptr, __WALL);
  }
}

}  // namespace ckpt
