#include "ptrace/remote_syscalls.hpp"

#include <link.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "arch/x86_64/sigreturn.hpp"
#include "common/fault_point.hpp"
#include "common/log.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::ptrace {
namespace {

constexpr uint64_t kWindow = 64 << 10;

// Looks for `find` in [start, end) one window at a time (windows overlap by the longest gadget),
// window(at, n) giving the n bytes at `at` (empty when unreadable); the address of the first hit.
// Stops after `budget` bytes in all, which the caller shares between ranges.
template <typename Window, typename Find>
std::optional<uint64_t> search(uint64_t start, uint64_t end, Window window, Find find,
                               size_t& budget) {
  for (uint64_t at = start; at < end && budget > 0;) {
    size_t n = static_cast<size_t>(std::min(kWindow, end - at));
    std::span<const uint8_t> bytes = window(at, n);
    if (bytes.empty()) return std::nullopt;
    if (auto off = find(bytes)) return at + *off;
    budget -= std::min(budget, n);
    if (at + n >= end) break;
    at += n - arch::x86_64::kMaxGadgetLength;
  }
  return std::nullopt;
}

// search() in the tracee's range `r`, reading it window by window.
template <typename Find>
std::optional<uint64_t> scan(const Tracee& t, const CodeRange& r, Find find, size_t& budget) {
  // No larger than the range: a fresh buffer's pages are faults, slow in this kind of guest.
  std::vector<uint8_t> buf(std::min(kWindow, r.end - r.start));
  auto window = [&](uint64_t at, size_t n) -> std::span<const uint8_t> {
    if (!t.read_memory(at, buf.data(), n).ok()) return {};
    return {buf.data(), n};
  };
  return search(r.start, r.end, window, find, budget);
}

// Read under /proc/PID/task/TID, not /proc/TID: a /proc/TID dentry makes the kernel's flush of it
// at the thread's exit slower, and the kernel (6.14+) frees a dead thread's TID only after telling
// the parent the process ended, so a restore right after that met "File exists" more often. Not
// with an ifstream: the first one of a process took 0.4 ms here (its locale), in every dump.
bool uses_shadow_stack(pid_t pid, pid_t tid) {
  auto status = proc::read_proc_file(pid, fmt::format("task/{}/status", tid));
  if (!status.ok()) return false;
  std::string_view text = *status, line, key, value;
  while (proc::next_line(text, line))
    if (proc::split_key_value(line, key, value) && key == "x86_Thread_features")
      return value.find("shstk") != std::string_view::npos;
  return false;
}

// The gadget in `r` at the offset ckpt's own copy of the same file has it, if it is there.
std::optional<uint64_t> known_rt_sigreturn(const Tracee& t, const CodeRange& r) {
  const std::optional<FileSpot>& own = own_rt_sigreturn();
  if (!own || r.inode != own->inode || r.dev_major != own->dev_major ||
      r.dev_minor != own->dev_minor || own->offset < r.file_offset)
    return std::nullopt;
  uint64_t at = r.start + (own->offset - r.file_offset);
  std::array<uint8_t, arch::x86_64::kMaxGadgetLength> code{};
  if (at + code.size() > r.end || !t.read_memory(at, code.data(), code.size()).ok())
    return std::nullopt;
  if (arch::x86_64::find_rt_sigreturn(code) != size_t{0}) return std::nullopt;
  return at;
}

}  // namespace

const std::optional<FileSpot>& own_rt_sigreturn() {
  static const std::optional<FileSpot> own = [] {
    std::optional<FileSpot> spot;
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) -> int {
          std::string_view name = info->dlpi_name ? info->dlpi_name : "";
          if (!name.substr(name.rfind('/') + 1).starts_with("libc.so")) return 0;
          struct stat st {};
          if (::stat(info->dlpi_name, &st) != 0) return 1;
          for (int i = 0; i < info->dlpi_phnum; ++i) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[i];
            if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
            // In windows, as in a tracee: a pattern the library lacks is not looked for through
            // all of it (each page of it ckpt had not run yet would be a fault).
            uint64_t start = info->dlpi_addr + ph.p_vaddr;
            auto window = [](uint64_t at, size_t n) {
              return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(at), n);
            };
            size_t budget = ph.p_filesz;
            if (auto at = search(start, start + ph.p_filesz, window,
                                 arch::x86_64::find_rt_sigreturn, budget)) {
              *static_cast<std::optional<FileSpot>*>(data) = FileSpot{
                  major(st.st_dev), minor(st.st_dev), st.st_ino, ph.p_offset + *at - start};
              return 1;
            }
          }
          return 1;
        },
        &spot);
    return spot;
  }();
  return own;
}

std::optional<SelfRestore> find_self_restore(const Tracee& t, pid_t pid,
                                             const std::vector<CodeRange>& code, uint64_t frame_top,
                                             SelfRestore* known) {
  if (uses_shadow_stack(pid, t.tid())) {
    log::info("ptrace", "tid {}: shadow stack enabled, injecting without an rt_sigreturn frame",
              t.tid());
    return std::nullopt;
  }
  if (known && known->syscall_then_ret && known->rt_sigreturn) {
    SelfRestore sr = *known;
    sr.frame_top = frame_top;
    return sr;
  }
  // Enough for any C library's text; a process without the gadget is not scanned whole each time.
  size_t budget = 16 << 20;
  SelfRestore sr;
  sr.frame_top = frame_top;
  for (auto& r : code)
    if (r.vdso && !sr.syscall_then_ret)
      sr.syscall_then_ret = scan(t, r, arch::x86_64::find_syscall_then_ret, budget).value_or(0);
  for (auto& r : code)
    if (r.preferred && !sr.rt_sigreturn) sr.rt_sigreturn = known_rt_sigreturn(t, r).value_or(0);
  for (bool preferred : {true, false})
    for (auto& r : code)
      if (r.preferred == preferred && !sr.rt_sigreturn)
        sr.rt_sigreturn = scan(t, r, arch::x86_64::find_rt_sigreturn, budget).value_or(0);
  if (!sr.syscall_then_ret || !sr.rt_sigreturn) {
    log::info("ptrace", "tid {}: no {} found in its code, injecting without an rt_sigreturn frame",
              t.tid(),
              sr.syscall_then_ret ? "rt_sigreturn gadget" : "`syscall; ...; ret` in the vdso");
    return std::nullopt;
  }
  if (known) *known = sr;
  return sr;
}

Result<RemoteSyscalls> RemoteSyscalls::start(Tracee& t, uint64_t syscall_insn,
                                             std::optional<SelfRestore> self_restore) {
  CKPT_TRY_ASSIGN(Regs regs, t.regs());
  CKPT_TRY_ASSIGN(uint64_t mask, t.signal_mask());
  RemoteSyscalls rs(t, syscall_insn, arch::regs_for_kernel_restart(regs, true), mask);
  // From here on the destructor puts back whatever has been changed.
  if (self_restore) CKPT_TRY(rs.arm_self_restore(*self_restore, regs));
  CKPT_TRY(t.set_signal_mask(~uint64_t{0}));
  return rs;
}

RemoteSyscalls::RemoteSyscalls(RemoteSyscalls&& o) noexcept
    : t_(o.t_),
      insn_(o.insn_),
      saved_(o.saved_),
      saved_mask_(o.saved_mask_),
      done_(o.done_),
      frame_addr_(o.frame_addr_),
      frame_old_(std::move(o.frame_old_)) {
  o.done_ = true;
}

Regs RemoteSyscalls::call_base() const {
  Regs r = saved_;
  if (frame_addr_ != 0) r.rsp = frame_addr_;
  r.orig_rax = static_cast<uint64_t>(-1);
  return r;
}

// Writes the frame, then parks the thread just after the `syscall` of the gadget: from that
// instant a vanished tracer means `ret` into rt_sigreturn. A frame that cannot be made leaves the
// calls to go on as before, which the log tells.
Status RemoteSyscalls::arm_self_restore(const SelfRestore& sr, const Regs& stopped) {
  CKPT_TRY_ASSIGN(auto xstate, t_->xstate());
  // rt_sigreturn resets the thread's restart block: an interrupted sleep must be repeated with
  // what it had left, as after a restore.
  auto frame = arch::x86_64::build_sigreturn_frame(regs_for_restart(stopped, false), saved_mask_,
                                                   xstate, sr.frame_top, sr.rt_sigreturn);
  if (!frame.ok()) {
    log::info("ptrace", "tid {}: no rt_sigreturn frame ({}); injecting without one", t_->tid(),
              frame.error().message);
    return {};
  }
  // Only where the thread itself can read: rt_sigreturn reads the frame as the thread (a guard
  // page below a thread's stack is writable through /proc/PID/mem, not by the thread).
  std::vector<uint8_t> old(frame->bytes.size());
  Status st = t_->read_memory(frame->addr, old.data(), old.size(), false);
  if (st.ok()) {
    st = t_->write_memory(frame->addr, frame->bytes.data(), frame->bytes.size(), false);
    // A write that stopped halfway: put back what it changed.
    if (!st.ok()) (void)t_->write_memory(frame->addr, old.data(), old.size(), false);
  }
  if (!st.ok()) {
    log::info("ptrace",
              "tid {}: cannot write an rt_sigreturn frame below its stack ({}); "
              "injecting without one",
              t_->tid(), st.error().message);
    return {};
  }
  frame_addr_ = frame->addr;
  frame_old_ = std::move(old);
  insn_ = sr.syscall_then_ret;
  Regs parked = call_base();
  parked.rip = insn_ + arch::kSyscallInsnLen;
  return t_->set_regs(parked);
}

RemoteSyscalls::~RemoteSyscalls() {
  if (!done_) {
    Status st = finish();
    if (!st.ok()) log::error("ptrace", "restoring tid {}: {}", t_->tid(), st.error().message);
  }
}

void RemoteSyscalls::set_final(const Regs& r, uint64_t mask) {
  saved_ = r;
  saved_mask_ = mask;
}

Status RemoteSyscalls::finish() {
  if (done_) return {};
  done_ = true;
  if (frame_addr_ == 0) {
    CKPT_TRY(t_->set_regs(saved_));
    return t_->set_signal_mask(saved_mask_);
  }
  // While the registers still lead to the frame, a vanished tracer means rt_sigreturn, which sets
  // this same mask: the mask first, then the registers, and the borrowed memory only once nothing
  // leads there any more.
  CKPT_TRY(t_->set_signal_mask(saved_mask_));
  CKPT_TRY(t_->set_regs(saved_));
  return t_->write_memory(frame_addr_, frame_old_.data(), frame_old_.size());
}

Result<StopInfo> RemoteSyscalls::run_to_syscall_stop() {
  for (;;) {
    CKPT_TRY(t_->resume_syscall());
    CKPT_TRY_ASSIGN(StopInfo stop, t_->wait_stop());
    log::debug("ptrace", "tid {}: stop {:#x}", t_->tid(), stop.status);
    if (stop.exited()) {
      pid_t tid = t_->tid();  // release() forgets it
      done_ = true;
      t_->release();
      return errorf("tid {} died during an injected system call (status {:#x})", tid, stop.status);
    }
    if (stop.syscall_stop()) return stop;
    int sig = stop.stop_signal();
    bool fault =
        sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP;
    if (fault && stop.event() == 0) {
      auto regs = t_->regs();
      return errorf("tid {}: signal {} during an injected system call at rip {:#x}", t_->tid(), sig,
                    regs.ok() ? regs->rip : 0);
    }
    // Only SIGKILL and SIGSTOP pass the blocked mask; a group-stop is resumed through.
    log::debug("ptrace", "tid {}: stop {:#x} during injected syscall", t_->tid(), stop.status);
  }
}

Result<long> RemoteSyscalls::call_raw(long nr, std::array<uint64_t, 6> args) {
  log::debug("ptrace", "tid {}: syscall {}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})", t_->tid(),
             nr, args[0], args[1], args[2], args[3], args[4], args[5]);
  if (done_) return errorf("tid {}: injected syscall after finish", t_->tid());
  Regs r = call_base();
  arch::set_syscall(r, insn_, nr, args);
  CKPT_TRY(t_->set_regs(r));
  CKPT_TRY_ASSIGN(StopInfo entry_stop, run_to_syscall_stop());
  fault::point("inside", "injected syscall");
  CKPT_TRY_ASSIGN(StopInfo exit_stop, run_to_syscall_stop());
  (void)entry_stop;
  (void)exit_stop;
  CKPT_TRY_ASSIGN(Regs after, t_->regs());
  return static_cast<long>(arch::syscall_ret(after));
}

// Runs the tracee until the runner's int3, passing through stops that are not ours (a group-stop).
Status RemoteSyscalls::run_to_trap() {
  CKPT_TRY(t_->resume());
  return wait_for_trap();
}

Status RemoteSyscalls::wait_for_trap() {
  for (;;) {
    CKPT_TRY_ASSIGN(StopInfo stop, t_->wait_stop());
    if (stop.exited()) {
      pid_t tid = t_->tid();
      done_ = true;
      t_->release();
      return errorf("tid {} died during injected system calls (status {:#x})", tid, stop.status);
    }
    int sig = stop.stop_signal();
    if (sig == SIGTRAP && stop.event() == 0) return {};
    if ((sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE) && stop.event() == 0) {
      auto regs = t_->regs();
      return errorf("tid {}: signal {} during injected system calls at rip {:#x}", t_->tid(), sig,
                    regs.ok() ? regs->rip : 0);
    }
    CKPT_TRY(t_->resume());
  }
}

namespace {

constexpr size_t kWords = 8;  // a batch table entry: nr, six arguments, result
// A result no system call returns: the entry has not run yet.
constexpr uint64_t kNotRun = uint64_t{1} << 63;

std::vector<uint64_t> batch_table(std::span<const BatchCall> calls) {
  std::vector<uint64_t> words(calls.size() * kWords + 1);
  for (size_t i = 0; i < calls.size(); ++i) {
    words[i * kWords] = static_cast<uint64_t>(calls[i].nr);
    std::copy(calls[i].args.begin(), calls[i].args.end(), words.begin() + i * kWords + 1);
    words[i * kWords + kWords - 1] = kNotRun;
  }
  words.back() = ~uint64_t{0};
  return words;
}

}  // namespace

Status RemoteSyscalls::start_chunk(uint64_t runner, uint64_t table, std::span<BatchCall> chunk,
                                   std::vector<uint64_t>& words) {
  words = batch_table(chunk);
  CKPT_TRY(t_->write_memory(table, words.data(), words.size() * sizeof(uint64_t)));
  Regs r = call_base();
  arch::set_batch(r, runner, table);
  return t_->set_regs(r);
}

Status RemoteSyscalls::read_results(uint64_t table, std::span<BatchCall> chunk,
                                    std::vector<uint64_t>& words) {
  CKPT_TRY(t_->read_memory(table, words.data(), words.size() * sizeof(uint64_t)));
  for (size_t i = 0; i < chunk.size(); ++i)
    chunk[i].ret = static_cast<long>(words[i * kWords + kWords - 1]);
  return {};
}

Status RemoteSyscalls::run_chunk(uint64_t runner, uint64_t table, std::span<BatchCall> chunk) {
  std::vector<uint64_t> words;
  CKPT_TRY(start_chunk(runner, table, chunk, words));
  CKPT_TRY(run_to_trap());
  return read_results(table, chunk, words);
}

Status RemoteSyscalls::judge(std::span<const BatchCall> calls) const {
  for (auto& c : calls) {
    log::debug("ptrace", "tid {}: batched {}({:#x}, {:#x}, {:#x}) = {}", t_->tid(), c.name,
               c.args[0], c.args[1], c.args[2], c.ret);
    if (c.judged && c.failed())
      return sys_error(static_cast<int>(-c.ret), fmt::format("{} in tid {}", c.name, t_->tid()));
  }
  return {};
}

size_t RemoteSyscalls::batch_room(size_t room) {
  return room / (kWords * sizeof(uint64_t)) - 1;  // the last entry's nr ends the table
}

Status RemoteSyscalls::call_batch_while(uint64_t runner, uint64_t table, size_t room,
                                        std::span<BatchCall> calls, const Meanwhile& meanwhile) {
  if (done_) return errorf("tid {}: injected syscalls after finish", t_->tid());
  if (calls.size() > batch_room(room))
    return errorf("tid {}: {} system calls do not fit one batch table", t_->tid(), calls.size());
  std::vector<uint64_t> words;
  CKPT_TRY(start_chunk(runner, table, calls, words));
  CKPT_TRY(t_->resume());
  std::vector<uint64_t> seen(words.size());
  auto finished = [&]() -> Result<size_t> {
    CKPT_TRY(t_->read_memory(table, seen.data(), seen.size() * sizeof(uint64_t)));
    size_t n = 0;
    while (n < calls.size() && seen[n * kWords + kWords - 1] != kNotRun) ++n;
    return n;
  };
  Status ran = meanwhile(finished);
  CKPT_TRY(wait_for_trap());  // whatever `meanwhile` did: the tracee must be stopped again
  CKPT_TRY(ran);
  CKPT_TRY(read_results(table, calls, words));
  return judge(calls);
}

Status RemoteSyscalls::call_batch(uint64_t runner, uint64_t table, size_t room,
                                  std::span<BatchCall> calls) {
  if (done_) return errorf("tid {}: injected syscalls after finish", t_->tid());
  size_t per = batch_room(room);
  if (per == 0) return errorf("tid {}: no room for a batch of system calls", t_->tid());
  for (size_t at = 0; at < calls.size(); at += per)
    CKPT_TRY(run_chunk(runner, table, calls.subspan(at, std::min(per, calls.size() - at))));
  return judge(calls);
}

Result<long> RemoteSyscalls::call(const char* name, long nr, std::array<uint64_t, 6> args) {
  CKPT_TRY_ASSIGN(long ret, call_raw(nr, args));
  if (ret < 0 && ret > -4096)
    return sys_error(static_cast<int>(-ret), fmt::format("{} in tid {}", name, t_->tid()));
  return ret;
}

}  // namespace ckpt::ptrace
