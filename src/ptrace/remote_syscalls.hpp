#pragma once
// RemoteSyscalls: runs system calls inside a stopped tracee, as if the tracee had made them.
//
// Construction saves the thread's registers and signal mask; destruction puts them back, so the
// thread continues exactly where it was. A thread stopped inside an interrupted system call holds
// -ERESTART* in rax, which the kernel turns into a restart (or, for a handler's signal, EINTR) only
// on its way out of signal delivery; the registers are put back in that form (even when the last
// call left the thread at a syscall-exit stop: letting a traced thread go, by PTRACE_DETACH or the
// tracer's death, marks it signal-pending, so it passes through signal delivery before user code
// and a signal that came while it was held still interrupts its call, as without us).
//
// Calls go through an existing `syscall` instruction in the tracee (its vdso, or the restorer's
// trampoline page), so nothing in its code is written. All signals are blocked while calls run
// so that none is delivered (or lost) in between.
//
// With a SelfRestore (the dump side), the thread never depends on us to get back: before anything
// changes, an rt_sigreturn frame holding its registers, signal mask and FPU state is written
// below its stack (arch/x86_64/sigreturn.hpp), and from then on its registers always lead there:
// between calls they sit after a `syscall` whose `ret` pops the address of an rt_sigreturn
// gadget, and each call is made through that same `syscall`. If the tracer dies at any moment,
// the kernel lets the thread go, the call (if any) completes, and rt_sigreturn puts everything
// back. The order of the steps leaves no window: registers to that safe state before the signals
// are blocked, the mask back before the registers, the frame's memory put back last.
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "arch/arch.hpp"
#include "common/result.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt::ptrace {

using arch::is_interrupted_syscall;  // arch/x86_64/syscall_restart.hpp
using arch::regs_for_restart;

// What lets a thread return to its saved context by itself if its tracer dies (see above).
struct SelfRestore {
  uint64_t syscall_then_ret = 0;  // a `syscall` followed by a plain path to `ret`
  uint64_t rt_sigreturn = 0;      // `mov $15, %eax; syscall`
  uint64_t frame_top = 0;  // the frame goes below this address: past the red zone and any scratch
};

// Executable memory of the tracee to look for the SelfRestore gadgets in.
struct CodeRange {
  uint64_t start = 0;
  uint64_t end = 0;
  bool vdso = false;       // where the `syscall ... ret` is looked for
  bool preferred = false;  // looked at first for rt_sigreturn (the C library)
  // The file mapped there, when known: a C library that is ckpt's own file has its rt_sigreturn
  // where ckpt's copy has it (checked before use), and is not scanned.
  uint64_t file_offset = 0;
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
};

// Where ckpt's own C library has its rt_sigreturn gadget, as the offset in its file (looked up
// at the first call, then kept); nullopt without one.
struct FileSpot {
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  uint64_t offset = 0;
};
const std::optional<FileSpot>& own_rt_sigreturn();

// The gadgets for a SelfRestore of thread `t` of process `pid` with its frame below `frame_top`,
// or nullopt (the log says why) when the process lacks one of them or the thread uses a shadow
// stack, whose check a `ret` to the gadget would fail.
// `known`, when given, holds the gadgets of an earlier search in the same unchanged memory
// (its frame_top is ignored): they are used without scanning again, or filled in after a scan.
std::optional<SelfRestore> find_self_restore(const Tracee& t, pid_t pid,
                                             const std::vector<CodeRange>& code, uint64_t frame_top,
                                             SelfRestore* known = nullptr);

// One system call of a batch (RemoteSyscalls::call_batch).
struct BatchCall {
  const char* name = "";
  long nr = 0;
  std::array<uint64_t, 6> args{};
  bool judged = true;  // a negative return fails the batch (else the caller looks at `ret`)
  long ret = 0;        // the raw kernel return, once run
  // Run, and returned an error (-errno).
  bool failed() const { return ret < 0 && ret > -4096; }
};

class RemoteSyscalls {
 public:
  // `syscall_insn` is the address of a `syscall` (0f 05) instruction executable in the tracee.
  // With `self_restore`, calls go through its `syscall_then_ret` instead; if the frame cannot be
  // built (an XSAVE area it does not understand, a stack it cannot write) the calls go on without
  // it, as without `self_restore`, and the log says why.
  static Result<RemoteSyscalls> start(Tracee& t, uint64_t syscall_insn,
                                      std::optional<SelfRestore> self_restore = std::nullopt);
  RemoteSyscalls(RemoteSyscalls&& o) noexcept;
  RemoteSyscalls(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(RemoteSyscalls&&) = delete;
  ~RemoteSyscalls();

  // Runs one system call; a negative kernel return becomes an Error naming the call.
  Result<long> call(const char* name, long nr, std::array<uint64_t, 6> args = {});
  // Same, but returns the raw kernel value (negative errno) without judging it.
  Result<long> call_raw(long nr, std::array<uint64_t, 6> args = {});
  // Runs `calls` in order with one stop instead of two per call, through the batch runner at
  // `runner` (arch::kTrampolineCode, which only the restore's puppets hold) with its table in the
  // tracee's scratch memory [table, table + room). Every call runs even after one failed (a
  // failed restore kills the process anyway); then the first judged failure is the error.
  Status call_batch(uint64_t runner, uint64_t table, size_t room, std::span<BatchCall> calls);
  // How many calls one batch table of `room` bytes holds.
  static size_t batch_room(size_t room);
  // call_batch for calls that fit one table (batch_room), running `meanwhile` on this thread while
  // the tracee works through them: it gets a function that says how many of the calls have
  // finished so far (read from the table). `meanwhile` must not inject calls into this tracee. The
  // tracee is stopped again before this returns, whatever `meanwhile` returned.
  using Meanwhile = std::function<Status(const std::function<Result<size_t>()>& finished)>;
  Status call_batch_while(uint64_t runner, uint64_t table, size_t room, std::span<BatchCall> calls,
                          const Meanwhile& meanwhile);

  // The registers the thread will get back.
  const Regs& saved_regs() const { return saved_; }
  // Replace what the destructor restores (restore sets the final registers this way). A frame
  // written by a SelfRestore keeps the state of start(): this is for the restore side.
  void set_final(const Regs& r, uint64_t mask);
  // Whether a tracer dying now would leave the thread to return by itself (a frame is in place).
  bool self_restoring() const { return frame_addr_ != 0; }
  // Gives up without restoring anything (the tracee has been killed).
  void abandon() { done_ = true; }
  // Puts the saved state back now; later calls are not allowed.
  Status finish();

  Tracee& tracee() { return *t_; }

 private:
  RemoteSyscalls(Tracee& t, uint64_t insn, Regs saved, uint64_t mask)
      : t_(&t), insn_(insn), saved_(saved), saved_mask_(mask) {}
  Result<StopInfo> run_to_syscall_stop();
  Status run_to_trap();
  Status wait_for_trap();
  Status start_chunk(uint64_t runner, uint64_t table, std::span<BatchCall> chunk,
                     std::vector<uint64_t>& words);
  Status read_results(uint64_t table, std::span<BatchCall> chunk, std::vector<uint64_t>& words);
  Status run_chunk(uint64_t runner, uint64_t table, std::span<BatchCall> chunk);
  Status judge(std::span<const BatchCall> calls) const;
  Status arm_self_restore(const SelfRestore& sr, const Regs& stopped);
  // The registers every call starts from: the saved ones, or, with a frame, the parked ones.
  Regs call_base() const;

  Tracee* t_ = nullptr;
  uint64_t insn_ = 0;
  Regs saved_{};
  uint64_t saved_mask_ = 0;
  bool done_ = false;
  uint64_t frame_addr_ = 0;         // where the rt_sigreturn frame is, 0 without one
  std::vector<uint8_t> frame_old_;  // what the frame covers, put back by finish()
};

}  // namespace ckpt::ptrace
