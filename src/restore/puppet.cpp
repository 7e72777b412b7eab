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
#include "resources/files.hpp"
#include "resources/memory.hpp"
#include "resources/process.hpp"
#include "resources/signals.hpp"

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

Status setup_inside(const PuppetPlan& plan, std::vector<int>& keep) {
  CKPT_TRY(signals::reset_in_puppet());
  CKPT_TRY(files::restore_in_puppet(*plan.image, plan.shell_job, keep, plan.deleted_files));
  CKPT_TRY(process::restore_in_puppet(*plan.image));
  void* page =
      ::mmap(reinterpret_cast<void*>(plan.trampoline), kPage, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (page == MAP_FAILED)
    return sys_error(fmt::format("mmap restorer page at {:#x}", plan.trampoline));
  static const uint8_t code[] = {0x0f, 0x05, 0xcc};  // syscall; int3
  std::memcpy(page, code, sizeof(code));
  return {};
}

[[noreturn]] void puppet_main(const PuppetPlan& plan, int sync_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::vector<int> keep = plan.keep_fds;
  keep.push_back(sync_fd);
  Status st = setup_inside(plan, keep);
  if (!st.ok()) {
    report(keep.back(), "err " + st.error().message);
    ::_exit(1);
  }
  report(keep.back(), fmt::format("ok {}", fmt::join(keep, " ")));
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

Result<uint64_t> choose_trampoline(const json& image) {
  auto used = memory::used_ranges(image);
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

Result<Puppet> Puppet::create(PuppetPlan plan) {
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd read_end(sync[0]), write_end(sync[1]);
  pid_t want = plan.pid;
  CloneArgs args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  long r = ::syscall(SYS_clone3, &args, sizeof(args));
  if (r == 0) puppet_main(plan, write_end.get());
  if (r < 0) {
    if (errno == EEXIST) return errorf("restore: pid {} is in use by another process", plan.pid);
    if (errno == EPERM)
      return errorf("restore: creating pid {} needs CAP_CHECKPOINT_RESTORE", plan.pid);
    return sys_error(fmt::format("clone3 with pid {}", plan.pid));
  }
  write_end.reset();
  auto tracee = ptrace::Tracee::seize(
      static_cast<pid_t>(r), PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL);
  if (!tracee.ok()) {
    ::kill(static_cast<pid_t>(r), SIGKILL);
    ::waitpid(static_cast<pid_t>(r), nullptr, 0);
    return tracee.error();
  }
  Puppet p(static_cast<pid_t>(r), std::move(*tracee));
  std::string msg;
  CKPT_TRY(read_report(read_end.get(), plan.pid, msg));
  if (msg.rfind("err ", 0) == 0) return errorf("restore pid {}: {}", plan.pid, msg.substr(4));
  std::istringstream in(msg.substr(2));
  for (int fd; in >> fd;) p.kept_.push_back(fd);
  CKPT_TRY(p.tracee_.interrupt());
  return p;
}

Puppet::Puppet(Puppet&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)), tracee_(std::move(o.tracee_)), kept_(std::move(o.kept_)) {}

Puppet::~Puppet() {
  if (pid_ == 0) return;
  ::kill(pid_, SIGKILL);
  tracee_.release();
  // Threads we traced must be reaped one by one before their leader can be.
  if (auto tids = proc::list_threads(pid_); tids.ok())
    for (pid_t tid : *tids)
      if (tid != pid_) ::waitpid(tid, nullptr, __WALL);
  ::waitpid(pid_, nullptr, __WALL);
}

}  // namespace ckpt
