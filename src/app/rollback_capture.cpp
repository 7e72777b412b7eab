#include "app/rollback_capture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/log.hpp"
#include "proc/proc_file.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "ptrace/rseq_config.hpp"

namespace ckpt::rollback {
namespace {

Status capture_kernel_state(ThreadRecord& r) {
  if (auto cfg = ptrace::rseq_config(r.tid); cfg.ok()) {
    r.rseq_addr = cfg->rseq_abi_pointer;
    r.rseq_len = cfg->rseq_abi_size;
    r.rseq_sig = cfg->signature;
  }
  void* head = nullptr;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, r.tid, &head, &len) == 0) {
    r.robust_head = reinterpret_cast<uint64_t>(head);
    r.robust_len = len;
  }
  return {};
}

Result<stack_t> ask_altstack(FrozenThread& t, const TargetInfo& target) {
  CKPT_TRY_ASSIGN(auto rs, ptrace::RemoteSyscalls::start(t.tracee, target.syscall_gadget));
  CKPT_TRY(rs.call("sigaltstack", SYS_sigaltstack, {0, target.scratch()}));
  stack_t ss;
  std::memcpy(&ss, target.rw->scratch, sizeof ss);
  CKPT_TRY(rs.finish());
  return ss;
}

Result<pid_t> inject_fork(FrozenThread& in, const TargetInfo& target) {
  ptrace::Tracee& t = in.tracee;
  unsigned long opts = t.options();
  CKPT_TRY(t.set_options(opts | PTRACE_O_TRACECLONE));
  Result<long> child = make_error("not run");
  {
    CKPT_TRY_ASSIGN(auto rs, ptrace::RemoteSyscalls::start(t, target.syscall_gadget));
    // clone(flags 0): a fork whose exit signal is 0, so the program gets no SIGCHLD for it and
    // its wait() calls (without __WALL/__WCLONE) never see it.
    // -ERESTARTNOINTR (513): a stop was pending; the kernel would restart the call, so do we.
    for (int i = 0; i < 100; ++i) {
      child = rs.call("clone", SYS_clone, {0, 0, 0, 0, 0, 0});
      if (child || child.error().errnum != 513) break;
    }
    CKPT_TRY(rs.finish());
  }
  CKPT_TRY(t.set_options(opts));
  if (!child) return std::move(child).error();
  in.in_delivery_stop = false;
  return static_cast<pid_t>(*child);
}

}  // namespace

Result<ThreadRecord> capture_thread(FrozenThread& t, const TargetInfo& target,
                                    const stack_t* altstack) {
  ThreadRecord r;
  r.tid = t.tid();
  CKPT_TRY_ASSIGN(r.regs, t.tracee.regs());
  CKPT_TRY_ASSIGN(r.xstate, t.tracee.xstate());
  CKPT_TRY_ASSIGN(r.mask, t.tracee.signal_mask());
  CKPT_TRY(capture_kernel_state(r));
  if (target.tid_address_offset != 0)
    r.tid_address = r.regs.fs_base + static_cast<uint64_t>(target.tid_address_offset);
  if (altstack) {
    r.altstack = *altstack;
    r.altstack_known = true;
  } else if (!t.in_delivery_stop) {
    // Injecting resumes the thread: one caught taking a signal would lose it, so it is left
    // alone and its alternate stack is simply not restored.
    CKPT_TRY_ASSIGN(r.altstack, ask_altstack(t, target));
    r.altstack_known = true;
  }
  return r;
}

void Snapshot::kill() {
  if (pidfd) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

bool Snapshot::alive() const {
  if (!pidfd) return false;
  pollfd p{pidfd.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

Result<Snapshot> create_snapshot(FrozenThread& in, const TargetInfo& target, pid_t helper) {
  CKPT_TRY_ASSIGN(pid_t child, inject_fork(in, target));
  // The kernel attached the child to us (PTRACE_O_TRACECLONE) and stopped it before it ran.
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(child, &status, __WALL);
    if (r == child) break;
    if (r < 0 && errno != EINTR) return sys_error(fmt::format("waitpid snapshot {}", child));
  }
  auto t = ptrace::Tracee::adopt(child, PTRACE_O_TRACESYSGOOD);
  if (!WIFSTOPPED(status)) {
    t.release();
    return errorf("snapshot {} of pid {} ended at once (status {:#x})", child, target.pid, status);
  }
  Snapshot s;
  s.pid = child;
  s.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  CKPT_TRY_ASSIGN(ptrace::Regs regs, t.regs());
  regs.rip = target.park_entry;
  regs.rdi = static_cast<uint64_t>(helper);
  regs.rsi = target.base + offsetof(RwArea, snap_poll);
  regs.rdx = target.base + offsetof(RwArea, snap_name);
  regs.rax = 0;
  regs.orig_rax = static_cast<uint64_t>(-1);
  Status st = t.set_regs(regs);
  if (st) st = t.set_signal_mask(~uint64_t{0});
  if (!st) {
    s.kill();
    return st.error();
  }
  CKPT_TRY(t.detach());
  return s;
}

Result<std::vector<FdRecord>> list_fd_records(pid_t pid) {
  std::string dir = proc::proc_path(pid, "fd");
  ScopedFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return proc::proc_error(pid, "fd", "open", errno);
  DIR* d = ::fdopendir(::dup(dfd.get()));
  if (!d) return sys_error(fmt::format("opendir {}", dir));
  std::vector<FdRecord> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    FdRecord r;
    r.fd = std::atoi(e->d_name);
    struct stat st {};
    if (::fstatat(dfd.get(), e->d_name, &st, 0) < 0) {
      // A descriptor the helper cannot open (closed meanwhile, or a socket of another netns):
      // it still counts as open, with no identity.
      out.push_back(r);
      continue;
    }
    r.dev = st.st_dev;
    r.ino = st.st_ino;
    r.regular = S_ISREG(st.st_mode);
    if (r.regular) {
      auto info = proc::read_proc_file(pid, fmt::format("fdinfo/{}", r.fd));
      if (info && info->rfind("pos:", 0) == 0)
        r.pos = std::strtoull(info->c_str() + 4, nullptr, 10);
    }
    out.push_back(r);
  }
  ::closedir(d);
  return out;
}

}  // namespace ckpt::rollback
