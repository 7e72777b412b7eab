#include "restore/puppet.hpp"

#include <fcntl.h>
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

#include <fmt/ranges.h>

#include "proc/maps.hpp"
#include "proc/task.hpp"
#include "resources/fds/pty.hpp"
#include "resources/files.hpp"
#include "resources/memory.hpp"
#include "resources/process.hpp"
#include "resources/signals.hpp"
#include "resources/sysv_ipc.hpp"
#include "resources/tree.hpp"

namespace ckpt {
namespace {

constexpr uint64_t kPage = 4096;

struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

void report(int fd, const std::string& msg) {
  std::string line = msg + "\n";
  (void)!::write(fd, line.data(), line.size());
}

Status setup_inside(const PuppetPlan& plan, size_t index, HandedFds& handed) {
  const PuppetSpec& spec = plan.processes[index];
  CKPT_TRY(signals::reset_in_puppet());
  CKPT_TRY(files::restore_in_puppet(*plan.image, index, handed));
  CKPT_TRY(process::restore_in_puppet(*spec.rec));
  CKPT_TRY(sysv_ipc::restore_in_puppet(*plan.image, spec.pid));
  void* page =
      ::mmap(reinterpret_cast<void*>(spec.trampoline), kPage, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (page == MAP_FAILED)
    return sys_error(fmt::format("mmap restorer page at {:#x}", spec.trampoline));
  std::memcpy(page, arch::kTrampolineCode, sizeof(arch::kTrampolineCode));
  return {};
}

Result<pid_t> clone_with_pid(pid_t want) {
  CloneArgs args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  long r = ::syscall(SYS_clone3, &args, sizeof(args));
  if (r < 0) {
    if (errno == EEXIST) return errorf("restore: pid {} is in use by another process", want);
    if (errno == EPERM)
      return errorf("restore: creating pid {} needs CAP_CHECKPOINT_RESTORE", want);
    return sys_error(fmt::format("clone3 with pid {}", want));
  }
  return static_cast<pid_t>(r);
}

[[noreturn]] void puppet_main(const PuppetPlan& plan, size_t index,
                              const std::vector<int>& report_fds, int created_fd);

// Creates the children of puppet `index` one after the other, each once the one before has
// created its own: a process group's leader then exists before any process joins it.
Status create_children(const PuppetPlan& plan, size_t index, const std::vector<int>& report_fds) {
  std::vector<pid_t> zombies;
  for (size_t child : plan.processes[index].children) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
    ScopedFd read_end(p[0]), write_end(p[1]);
    CKPT_TRY_ASSIGN(pid_t pid, clone_with_pid(plan.processes[child].pid));
    if (pid == 0) puppet_main(plan, child, report_fds, write_end.get());
    write_end.reset();
    char c = 0;
    while (::read(read_end.get(), &c, 1) < 0 && errno == EINTR) {
    }
    if (c != '1') return errorf("restore pid {}: its puppet failed", plan.processes[child].pid);
    if (plan.processes[child].zombie) zombies.push_back(pid);
  }
  return tree::settle_zombies(zombies);
}

[[noreturn]] void puppet_main(const PuppetPlan& plan, size_t index,
                              const std::vector<int>& report_fds, int created_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const PuppetSpec& spec = plan.processes[index];
  Status st = tree::join_in_puppet(*spec.rec, index == 0, plan.shell_job);
  if (st.ok() && spec.zombie) {
    (void)!::write(created_fd, "1", 1);
    tree::end_as_zombie(*spec.rec->zombie);
  }
  auto handed_fd = [&](uint32_t id) { return plan.handed.find(files::handed_key(id)); };
  if (st.ok()) st = fds::take_controlling_terminal(*plan.image, spec.pid, handed_fd);
  if (st.ok()) st = create_children(plan, index, report_fds);
  if (created_fd >= 0) (void)!::write(created_fd, st.ok() ? "1" : "0", 1);
  HandedFds handed = plan.handed;
  handed.fds.push_back(report_fds[index]);
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

Result<uint64_t> choose_trampoline(const schema::ProcessRecord& proc) {
  auto used = memory::used_ranges(proc);
  CKPT_TRY_ASSIGN(auto own, proc::read_maps(getpid()));
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

Result<PuppetTree> PuppetTree::create(const PuppetPlan& plan) {
  std::vector<ScopedFd> read_ends, write_ends;
  std::vector<int> report_fds;
  for (size_t i = 0; i < plan.processes.size(); ++i) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
    read_ends.emplace_back(p[0]);
    write_ends.emplace_back(p[1]);
    report_fds.push_back(p[1]);
  }
  PuppetTree tree;
  CKPT_TRY_ASSIGN(pid_t root, clone_with_pid(plan.processes[0].pid));
  if (root == 0) puppet_main(plan, 0, report_fds, -1);
  for (auto& p : plan.processes) tree.pids_.push_back(p.pid);
  tree.tracees_.resize(plan.processes.size());
  tree.kept_.resize(plan.processes.size());
  write_ends.clear();  // a puppet that dies before its report then reads as EOF
  for (size_t i = 0; i < plan.processes.size(); ++i)
    if (!plan.processes[i].zombie) CKPT_TRY(tree.take_over(i, plan, read_ends[i].get()));
  return tree;
}

// Waits for puppet i's report, then attaches to it and stops it.
Status PuppetTree::take_over(size_t i, const PuppetPlan& plan, int report_fd) {
  pid_t pid = plan.processes[i].pid;
  std::string msg;
  CKPT_TRY(read_report(report_fd, pid, msg));
  if (msg.rfind("err ", 0) == 0) return errorf("restore pid {}: {}", pid, msg.substr(4));
  std::istringstream in(msg.substr(2));
  for (int fd; in >> fd;) kept_[i].push_back(fd);
  CKPT_TRY_ASSIGN(
      tracees_[i],
      ptrace::Tracee::seize(pid, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL));
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
