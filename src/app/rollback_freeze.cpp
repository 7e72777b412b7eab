#include "app/rollback_freeze.hpp"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/log.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"
#include "ptrace/remote_syscalls.hpp"

namespace ckpt::rollback {
namespace {

constexpr unsigned kPfExiting = 0x4;

// Whether a /proc/PID/task/TID/stat line is a thread ending: a zombie, dead, or PF_EXITING.
bool exiting(const std::string& stat) {
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return true;
  char state = stat[close + 2];
  if (state == 'Z' || state == 'X' || state == 'x') return true;
  std::string_view rest(stat.c_str() + close + 2);
  // Fields after the name: state ppid pgrp session tty_nr tpgid flags.
  for (int field = 0; field < 6; ++field) {
    auto space = rest.find(' ');
    if (space == std::string_view::npos) return false;
    rest.remove_prefix(space + 1);
  }
  return std::strtoul(std::string(rest.substr(0, rest.find(' '))).c_str(), nullptr, 10) &
         kPfExiting;
}

bool is_fault_signal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP;
}

}  // namespace

Result<Freezer> Freezer::freeze(pid_t pid) {
  Freezer f(pid);
  // A running thread may create another until it is stopped itself; a stopped process creates
  // none, so the list is final once a pass finds nothing new.
  for (int pass = 0; pass < 1000; ++pass) {
    CKPT_TRY_ASSIGN(auto tids, proc::list_threads(pid));
    bool added = false;
    for (pid_t tid : tids) {
      if (f.find(tid)) continue;
      CKPT_TRY(f.stop_one(tid));
      added = true;
    }
    if (!added) return f;
  }
  return make_error(fmt::format("pid {} keeps creating threads", pid), EAGAIN);
}

Status Freezer::stop_one(pid_t tid) {
  auto t = ptrace::Tracee::seize(tid, PTRACE_O_TRACESYSGOOD);
  if (!t) {
    int err = t.error().errnum;
    if (err == ESRCH) return {};  // ended meanwhile
    if (err == EPERM) {
      // A thread on its way out cannot be attached any more: it is as good as gone.
      auto stat = proc::read_proc_file(pid_, fmt::format("task/{}/stat", tid));
      if (!stat || exiting(*stat)) return {};
      auto st = proc::read_thread_status(pid_, tid);
      if (st && st->tracer_pid != 0)
        return make_error(fmt::format("thread {} is traced by pid {}", tid, st->tracer_pid), EBUSY);
    }
    return std::move(t).error();
  }
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_INTERRUPT) tid {}", tid));
  CKPT_TRY_ASSIGN(ptrace::StopInfo stop, t->wait_stop());
  if (stop.exited()) {
    t->release();
    return {};
  }
  auto ft = std::make_unique<FrozenThread>();
  ft->tracee = std::move(*t);
  if (stop.event() == 0 && stop.stop_signal() != 0) {
    ft->pending_sig = stop.stop_signal();
    ft->in_delivery_stop = true;
  }
  threads_.push_back(std::move(ft));
  return {};
}

FrozenThread* Freezer::find(pid_t tid) {
  for (auto& t : threads_)
    if (t->tid() == tid) return t.get();
  return nullptr;
}

void Freezer::adopt(ptrace::Tracee t) {
  auto ft = std::make_unique<FrozenThread>();
  ft->tracee = std::move(t);
  threads_.push_back(std::move(ft));
}

void Freezer::forget(pid_t tid) {
  std::erase_if(threads_, [tid](const std::unique_ptr<FrozenThread>& t) {
    if (t->tid() != tid) return false;
    t->tracee.release();
    return true;
  });
}

Status Freezer::release(bool drop_faults) {
  Status first;
  auto note = [&first](Status st) {
    if (!st.ok() && first.ok()) first = std::move(st);
  };
  for (auto& t : threads_) {
    pid_t tid = t->tid();
    if (t->has_final) {
      note(t->tracee.set_regs(t->final_regs));
    } else if (!t->in_delivery_stop) {
      // Resuming from our stop (inside signal delivery) restarts an interrupted call by itself,
      // except the calls that end with EINTR on any stop, which are given a restart code.
      auto regs = t->tracee.regs();
      if (regs && ptrace::is_interrupted_syscall(*regs))
        note(t->tracee.set_regs(arch::regs_for_kernel_restart(*regs, true)));
    }
    int sig = t->pending_sig;
    if (drop_faults && is_fault_signal(sig)) sig = 0;
    if (sig != 0 && t->in_delivery_stop) {
      if (::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) <
              0 &&
          errno != ESRCH)
        note(sys_error(fmt::format("ptrace(PTRACE_DETACH) tid {}", tid)));
      t->tracee.release();
    } else {
      note(t->tracee.detach());
      // The stop it was taken from is gone: send it again (its siginfo is lost).
      if (sig != 0) ::syscall(SYS_tgkill, pid_, tid, sig);
    }
  }
  threads_.clear();
  return first;
}

Freezer::~Freezer() {
  if (threads_.empty()) return;
  Status st = release(false);
  if (!st.ok()) log::warn("rollback", "letting pid {} go: {}", pid_, st.error().message);
}

}  // namespace ckpt::rollback
