#include "dump/ns_init.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "common/guard_process.hpp"
#include "common/log.hpp"
#include "dump/kill.hpp"
#include "proc/pid_namespace.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"

namespace ckpt::ns_init {
namespace {

Result<ScopedFd> open_ns(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error(fmt::format("open {}", path));
  return fd;
}

// Whether `pid` (one level below us) lives in a namespace whose init is a ckpt process (a copy
// made by `restore --pid-ns`): its init is then not part of what the user dumps.
bool under_ckpt_init(const proc::ProcStatus& status, size_t own) {
  auto self = proc::read_proc_link(::getpid(), "exe");
  pid_t up = status.ppid;
  for (int hops = 0; self.ok() && up > 1 && hops < 4096; ++hops) {
    auto st = proc::read_status(up);
    if (!st.ok() || proc::pid_ns_depth(*st) != own + 1) return false;
    if (st->ns_tgid.back() == 1) {
      auto exe = proc::read_proc_link(up, "exe");
      return exe.ok() && *exe == *self;
    }
    up = st->ppid;
  }
  return false;
}

}  // namespace

Result<std::optional<Entry>> Entry::of(pid_t pid) {
  auto status = proc::read_status(pid);
  if (!status.ok()) return std::optional<Entry>{};  // the dump names what is wrong
  CKPT_TRY_ASSIGN(size_t own, proc::own_pid_ns_depth());
  bool init = proc::is_child_ns_init(*status, own);
  if (!init && !(proc::pid_ns_depth(*status) == own + 1 && under_ckpt_init(*status, own)))
    return std::optional<Entry>{};
  // Said here: inside the namespace a tracer outside it shows as none.
  if (status->tracer_pid != 0)
    return errorf("dump pid {}: already traced by pid {}", pid, status->tracer_pid);
  Entry e;
  e.pid_ = pid;
  e.inner_ = status->ns_tgid.back();
  e.pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!e.pidfd_) return sys_error(fmt::format("dump pid {}: pidfd_open", pid));
  CKPT_TRY_ASSIGN(e.ns_, open_ns(proc::proc_path(pid, "ns/pid")));
  CKPT_TRY_ASSIGN(e.own_ns_, open_ns("/proc/thread-self/ns/pid"));
  return std::optional<Entry>(std::move(e));
}

Status Entry::enter_for_children() {
  if (::setns(ns_.get(), CLONE_NEWPID) < 0)
    return sys_error(fmt::format("dump pid {}: setns into its PID namespace", pid_));
  return {};
}

void Entry::leave() {
  if (::setns(own_ns_.get(), CLONE_NEWPID) < 0)
    log::warn("dump", "back to our own PID namespace for children: {}", std::strerror(errno));
}

Status Entry::settle_inside(DumpOptions& opts, int channel) {
  // Our mounts, with a /proc of the namespace: the store and every path mean what they meant to
  // the caller, and the PIDs are the namespace's.
  if (Status st = proc::mount_own_proc(); !st.ok())
    return st.error().wrap(fmt::format("dump pid {} from inside its PID namespace", pid_));
  opts.pid = inner_;
  // Write tracking follows processes by their PIDs as the caller sees them.
  opts.tracker = nullptr;
  if (inner_ == 1)
    opts.kill_from_outside = [channel](const DumpResult& saved) {
      return ask_caller_to_kill(channel, saved);
    };
  return {};
}

std::string Entry::describe() const {
  if (inner_ == 1)
    return fmt::format("pid {}, the init of its own PID namespace, dumped from inside it", pid_);
  return fmt::format(
      "pid {}, pid {} of a PID namespace made by ckpt restore --pid-ns, dumped "
      "from inside it",
      pid_, inner_);
}

Status Entry::kill() {
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0) < 0)
    return sys_error(fmt::format("kill pid {} with SIGKILL", pid_));
  return {};
}

Status Entry::wait_dead() {
  return kill_and_wait({KillTarget{pid_, {}}});
}

std::optional<int32_t> last_pid_before_us() {
  int err = 0;
  auto text = proc::read_text_file("/proc/sys/kernel/ns_last_pid", &err);
  if (!text.ok()) return std::nullopt;
  auto last = static_cast<int32_t>(std::atoi(text->c_str()));
  // Taken by our own creation, the first free PID after the tree's last: the tree's next fork
  // would have had it.
  return last == ::getpid() ? last - 1 : last;
}

Status ask_caller_to_kill(int channel, const DumpResult& saved) {
  std::string m = fmt::format("kill {} {} {}\n", saved.generation.id, saved.frozen.count(),
                              saved.total.count());
  CKPT_TRY(send_with_fds(channel, m.data(), m.size(), {}, "dump: ask the caller to kill"));
  // Killed while waiting, normally. The caller's answer otherwise: why it could not.
  char buf[1024];
  pollfd p{channel, POLLIN, 0};
  if (::poll(&p, 1, 30'000) <= 0) return make_error("the caller did not kill it in 30 s");
  ssize_t n = ::recv(channel, buf, sizeof buf - 1, 0);
  if (n <= 0) return make_error("the caller ended before killing it");
  return make_error(std::string(buf, static_cast<size_t>(n)));
}

}  // namespace ckpt::ns_init
