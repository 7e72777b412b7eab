#include "ptrace/tracee.hpp"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <utility>

#include "common/fault_point.hpp"
#include "common/scoped_fd.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"

namespace fs = std::filesystem;

namespace ckpt::ptrace {
namespace {

// Every ptrace request goes through here, so that the fault-injection tests can kill ckpt just
// before and just after each one (common/fault_point.hpp).
long request(__ptrace_request req, const char* name, pid_t tid, void* addr, void* data) {
  fault::point("before", name);
  long r = ::ptrace(req, tid, addr, data);
  fault::point("after", name);
  return r;
}

// Reaps the threads of `leader`'s process that have exited (a traced thread waits for its tracer).
// It reads /proc: done at most every few milliseconds, not at every look while another tracee's
// event stays listed first (a dead thread waits that much longer to be reaped, nothing more).
void reap_dead_siblings(pid_t leader) {
  thread_local std::chrono::steady_clock::time_point last_look{};
  auto now = std::chrono::steady_clock::now();
  if (now - last_look < std::chrono::milliseconds(2)) return;
  last_look = now;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fmt::format("/proc/{}/task", leader), ec);
       !ec && it != fs::end(it); it.increment(ec)) {
    pid_t tid = static_cast<pid_t>(std::atol(it->path().filename().c_str()));
    if (tid <= 0 || tid == leader) continue;
    // Looked at first, taken only when it is an exit: a tracee's stop is reported even without
    // WSTOPPED, and a live sibling's stop belongs to the code that waits for that thread.
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(tid), &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
        si.si_pid != tid)
      continue;
    if (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)
      ::waitpid(tid, nullptr, __WALL | WNOHANG);
  }
}

}  // namespace

bool StopInfo::exited() const {
  return WIFEXITED(status) || WIFSIGNALED(status);
}
int StopInfo::stop_signal() const {
  return WIFSTOPPED(status) ? WSTOPSIG(status) : 0;
}
int StopInfo::event() const {
  return WIFSTOPPED(status) ? (status >> 16) & 0xff : 0;
}
bool StopInfo::syscall_stop() const {
  return stop_signal() == (SIGTRAP | 0x80);
}

Result<Tracee> Tracee::seize(pid_t tid, unsigned long options) {
  if (request(PTRACE_SEIZE, "PTRACE_SEIZE", tid, nullptr, reinterpret_cast<void*>(options)) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_SEIZE) tid {}", tid));
  return Tracee(tid, options);
}

Tracee Tracee::adopt(pid_t tid, unsigned long options) {
  return Tracee(tid, options);
}

Tracee::Tracee(Tracee&& o) noexcept
    : tid_(std::exchange(o.tid_, 0)), options_(std::exchange(o.options_, 0)) {}

Tracee& Tracee::operator=(Tracee&& o) noexcept {
  if (this != &o) {
    (void)detach();
    tid_ = std::exchange(o.tid_, 0);
    options_ = std::exchange(o.options_, 0);
  }
  return *this;
}

Status Tracee::set_options(unsigned long options) {
  if (request(PTRACE_SETOPTIONS, "PTRACE_SETOPTIONS", tid_, nullptr,
              reinterpret_cast<void*>(options)) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_SETOPTIONS, {:#x}) tid {}", options, tid_));
  options_ = options;
  return {};
}

Tracee::~Tracee() {
  (void)detach();
}

Status Tracee::detach() {
  if (tid_ == 0) return {};
  pid_t tid = std::exchange(tid_, 0);
  if (request(PTRACE_DETACH, "PTRACE_DETACH", tid, nullptr, nullptr) < 0 && errno != ESRCH)
    return sys_error(fmt::format("ptrace(PTRACE_DETACH) tid {}", tid));
  return {};
}

// A traced leader's exit is reported only once its other threads are reaped, and a traced
// thread is reaped only by its tracer: waiting for the leader of a process killed mid-dump would
// block forever while its threads wait for us. So the wait blocks on one thread alone only when
// no other thread can be waiting for us (alone_untraced_clones()).
Result<StopInfo> Tracee::wait_stop() {
  for (;;) {
    CKPT_TRY_ASSIGN(std::optional<StopInfo> stop, poll_stop());
    if (stop) return *stop;
    CKPT_TRY(wait_for_any_event());
  }
}

Result<std::optional<StopInfo>> Tracee::poll_stop() {
  for (;;) {
    if (auto kept = parents_exit_seen(); kept) return kept;
    StopInfo info;
    pid_t r = ::waitpid(tid_, &info.status, __WALL | WNOHANG);
    if (r == tid_) return std::optional(info);
    if (r == 0) return std::optional<StopInfo>();
    if (errno != EINTR) return sys_error(fmt::format("waitpid tid {}", tid_));
  }
}

// A tracer that is also the process's parent (`ckpt run` checkpointing its program) would reap
// the process by taking its exit here, and the exit status the parent waits for would be gone: a
// program that ended during a checkpoint would look like one that vanished. So the exit of a
// process of ours is looked at and left for the parent's own wait.
std::optional<StopInfo> Tracee::parents_exit_seen() const {
  siginfo_t si{};
  if (::waitid(P_PID, static_cast<id_t>(tid_), &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
      si.si_pid != tid_ ||
      (si.si_code != CLD_EXITED && si.si_code != CLD_KILLED && si.si_code != CLD_DUMPED))
    return std::nullopt;
  auto st = proc::read_status(tid_);
  if (!st.ok() || st->tgid != tid_ || st->ppid != ::getpid()) return std::nullopt;
  StopInfo info;
  if (si.si_code == CLD_EXITED)
    info.status = W_EXITCODE(si.si_status, 0);
  else
    info.status = si.si_status | (si.si_code == CLD_DUMPED ? WCOREFLAG : 0);
  return info;
}

// Whether waiting for this thread alone cannot miss its exit: a leader's exit is reported only
// once its other threads are reaped, which is ours to do for those we trace; with no other thread
// now and none that could be born traced (no PTRACE_O_TRACECLONE), there is none to reap. Then the
// wait blocks on this thread only: the P_ALL wait below returns at once, again and again, while
// any other child has an event nobody takes (a caller's unreaped zombie), turning each stop into
// a poll.
bool Tracee::alone_untraced_clones() const {
  if ((options_ & PTRACE_O_TRACECLONE) && !clones_processes_only_) return false;
  struct stat st {};
  // A task directory links "." and ".." and one entry per thread.
  return ::stat(fmt::format("/proc/{}/task", tid_).c_str(), &st) == 0 && st.st_nlink == 3;
}

// Blocks until some child or tracee has an event, without taking it. The event the kernel lists
// first may belong to another tracee that nobody is waiting for yet (e.g. a child just cloned by
// an injected call, listed before the threads): dead sibling threads are therefore looked for
// directly rather than through it, and reaped so that their leader's exit can be reported.
Status Tracee::wait_for_any_event() {
  siginfo_t si{};
  if (alone_untraced_clones()) {
    if (::waitid(P_PID, static_cast<id_t>(tid_), &si, WEXITED | WSTOPPED | WNOWAIT | __WALL) < 0 &&
        errno != EINTR)
      return sys_error(fmt::format("waitid tid {}", tid_));
    return {};
  }
  if (::waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WNOWAIT | __WALL) < 0)
    return errno == EINTR ? Status{} : sys_error(fmt::format("waitid (for tid {})", tid_));
  if (si.si_pid == tid_) return {};
  reap_dead_siblings(tid_);
  // Another thread's or child's event, not ours to take: look again shortly.
  ::usleep(100);
  return {};
}

Status Tracee::interrupt(StopInfo* how) {
  if (request(PTRACE_INTERRUPT, "PTRACE_INTERRUPT", tid_, nullptr, nullptr) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_INTERRUPT) tid {}", tid_));
  CKPT_TRY_ASSIGN(StopInfo stop, wait_stop());
  if (stop.exited())
    return make_error(fmt::format("tid {} exited while being stopped", tid_), ESRCH);
  if (how) *how = stop;
  // A seized thread reports PTRACE_EVENT_STOP for the interrupt; a signal that arrived first is
  // reported as a signal-delivery stop, which is also a stop we can work in. Its signal stays
  // undelivered: callers resume with signal 0 only after re-queueing what they took.
  return {};
}

Status Tracee::stop_in_signal_delivery() {
  // The interrupt is a job-control trap, which signal delivery takes before any signal: the
  // thread stops there on its way out of the kernel, before a handler could run.
  if (request(PTRACE_INTERRUPT, "PTRACE_INTERRUPT", tid_, nullptr, nullptr) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_INTERRUPT) tid {}", tid_));
  CKPT_TRY(resume());
  CKPT_TRY_ASSIGN(StopInfo stop, wait_stop());
  if (stop.exited()) {
    pid_t gone = tid_;
    release();  // nothing left to detach from
    return make_error(fmt::format("tid {} exited while being stopped", gone), ESRCH);
  }
  if (stop.event() != PTRACE_EVENT_STOP)
    return errorf("tid {}: stop {:#x} instead of PTRACE_EVENT_STOP on its way out of a system call",
                  tid_, stop.status);
  return {};
}

Status Tracee::resume_syscall() {
  if (request(PTRACE_SYSCALL, "PTRACE_SYSCALL", tid_, nullptr, nullptr) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_SYSCALL) tid {}", tid_));
  return {};
}

Status Tracee::step() {
  fault::before_step();
  if (request(PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP", tid_, nullptr, nullptr) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_SINGLESTEP) tid {}", tid_));
  CKPT_TRY_ASSIGN(StopInfo stop, wait_stop());
  if (stop.exited()) return errorf("tid {} ended while being stepped", tid_);
  if (stop.stop_signal() != SIGTRAP)
    return errorf("tid {}: stopped by signal {} while being stepped", tid_, stop.stop_signal());
  return {};
}

namespace {

// One breakpoint instruction written over a thread's code, taken out again when dropped on every
// path: one left behind would kill the program with SIGTRAP the next time it got there.
class Breakpoint {
 public:
  static Result<Breakpoint> plant(Tracee& t, uint64_t addr) {
    Breakpoint b(t, addr);
    CKPT_TRY(t.read_memory(addr, &b.original_, 1));
    const uint8_t trap = arch::kBreakpointInsn;
    CKPT_TRY(t.write_memory(addr, &trap, 1));
    b.planted_ = true;
    return b;
  }
  Breakpoint(Breakpoint&& o) noexcept
      : t_(o.t_),
        addr_(o.addr_),
        original_(o.original_),
        planted_(std::exchange(o.planted_, false)) {}
  Breakpoint(const Breakpoint&) = delete;
  Breakpoint& operator=(const Breakpoint&) = delete;
  Breakpoint& operator=(Breakpoint&&) = delete;
  ~Breakpoint() { (void)remove(); }

  Status remove() {
    if (!std::exchange(planted_, false)) return {};
    Status st = t_->write_memory(addr_, &original_, 1);
    if (!st.ok())
      return errorf("tid {}: the breakpoint at {:#x} could not be taken out: {}", t_->tid(), addr_,
                    st.error().message);
    return {};
  }

 private:
  Breakpoint(Tracee& t, uint64_t addr) : t_(&t), addr_(addr) {}
  Tracee* t_;
  uint64_t addr_;
  uint8_t original_ = 0;
  bool planted_ = false;
};

}  // namespace

Status Tracee::run_to(uint64_t addr, std::chrono::milliseconds limit) {
  CKPT_TRY_ASSIGN(Breakpoint bp, Breakpoint::plant(*this, addr));
  CKPT_TRY(resume());
  CKPT_TRY_ASSIGN(std::optional<StopInfo> stop,
                  wait_stop_until(std::chrono::steady_clock::now() + limit));
  bool in_time = stop.has_value();
  if (!in_time) {
    StopInfo how;
    CKPT_TRY(interrupt(&how));
    stop = how;
  }
  CKPT_TRY(bp.remove());
  if (stop->exited()) return errorf("tid {} ended on its way to {:#x}", tid_, addr);
  CKPT_TRY_ASSIGN(Regs r, regs());
  bool arrived = stop->stop_signal() == SIGTRAP && r.rip == addr + arch::kBreakpointInsnLen;
  if (arrived) {
    // The breakpoint ran, the instruction it stood for did not: the thread must run that one
    // next, however late it got there.
    r.rip = addr;
    CKPT_TRY(set_regs(r));
  }
  if (!in_time) return errorf("tid {} did not reach {:#x} within {} ms", tid_, addr, limit.count());
  if (!arrived)
    return errorf("tid {}: stopped by signal {} at {:#x} on its way to {:#x}", tid_,
                  stop->stop_signal(), r.rip, addr);
  return {};
}

Result<std::optional<StopInfo>> Tracee::wait_stop_until(
    std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    CKPT_TRY_ASSIGN(std::optional<StopInfo> stop, poll_stop());
    if (stop || std::chrono::steady_clock::now() >= deadline) return stop;
    ::usleep(20);
  }
}

Status Tracee::resume() {
  if (request(PTRACE_CONT, "PTRACE_CONT", tid_, nullptr, nullptr) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_CONT) tid {}", tid_));
  return {};
}

Result<Regs> Tracee::regs() const {
  Regs r;
  if (request(PTRACE_GETREGS, "PTRACE_GETREGS", tid_, nullptr, &r) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_GETREGS) tid {}", tid_));
  return r;
}

Status Tracee::set_regs(const Regs& r) {
  if (request(PTRACE_SETREGS, "PTRACE_SETREGS", tid_, nullptr, const_cast<Regs*>(&r)) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_SETREGS) tid {}", tid_));
  return {};
}

Result<std::vector<uint8_t>> Tracee::xstate() const {
  // Large enough for every xsave layout of current CPUs (AMX needs ~11 KiB).
  std::vector<uint8_t> buf(16384);
  iovec iov{buf.data(), buf.size()};
  if (request(PTRACE_GETREGSET, "PTRACE_GETREGSET", tid_,
              reinterpret_cast<void*>(uintptr_t{arch::kExtendedRegset}), &iov) < 0)
    return sys_error(
        fmt::format("ptrace(PTRACE_GETREGSET, {}) tid {}", arch::kExtendedRegsetName, tid_));
  buf.resize(iov.iov_len);
  return buf;
}

Status Tracee::set_xstate(const std::vector<uint8_t>& data) {
  std::vector<uint8_t> copy = data;
  iovec iov{copy.data(), copy.size()};
  if (request(PTRACE_SETREGSET, "PTRACE_SETREGSET", tid_,
              reinterpret_cast<void*>(uintptr_t{arch::kExtendedRegset}), &iov) < 0)
    return sys_error(
        fmt::format("ptrace(PTRACE_SETREGSET, {}) tid {}", arch::kExtendedRegsetName, tid_));
  return {};
}

Result<uint64_t> Tracee::signal_mask() const {
  uint64_t mask = 0;
  if (request(PTRACE_GETSIGMASK, "PTRACE_GETSIGMASK", tid_, reinterpret_cast<void*>(sizeof(mask)),
              &mask) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_GETSIGMASK) tid {}", tid_));
  return mask;
}

Status Tracee::set_signal_mask(uint64_t mask) {
  if (request(PTRACE_SETSIGMASK, "PTRACE_SETSIGMASK", tid_, reinterpret_cast<void*>(sizeof(mask)),
              &mask) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_SETSIGMASK) tid {}", tid_));
  return {};
}

Status Tracee::read_memory(uint64_t addr, void* buf, size_t len, bool forced) const {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  if (::process_vm_readv(tid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) return {};
  if (!forced) return sys_error(fmt::format("process_vm_readv {:#x} in tid {}", addr, tid_));
  return proc::mem_file_io(tid_, addr, buf, len, false);
}

Status Tracee::write_memory(uint64_t addr, const void* buf, size_t len, bool forced) {
  fault::point("before", "memory write");
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  Status st;
  if (::process_vm_writev(tid_, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(len))
    st = forced ? proc::mem_file_io(tid_, addr, const_cast<void*>(buf), len, true)
                : sys_error(fmt::format("process_vm_writev {:#x} in tid {}", addr, tid_));
  fault::point("after", "memory write");
  return st;
}

}  // namespace ckpt::ptrace
