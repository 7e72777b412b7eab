#pragma once
// What a checkpoint records about the target besides its memory: each thread's CPU and kernel
// state, its descriptors, and the snapshot process that holds the memory itself.
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "app/rollback_freeze.hpp"
#include "app/rollback_shared.hpp"
#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt::rollback {

// Where the target's shared area and code are, for calls injected into it.
struct TargetInfo {
  pid_t pid = 0;
  RwArea* rw = nullptr;  // the shared area as the helper maps it
  uint64_t base = 0;     // the same area in the target
  uint64_t syscall_gadget = 0;
  uint64_t park_entry = 0;
  int64_t tid_address_offset = 0;

  uint64_t scratch() const { return base + offsetof(RwArea, scratch); }
};

struct ThreadRecord {
  pid_t tid = 0;
  ptrace::Regs regs{};
  std::vector<uint8_t> xstate;
  uint64_t mask = 0;
  // rseq registration (PTRACE_GET_RSEQ_CONFIGURATION), to recreate the thread.
  uint64_t rseq_addr = 0;
  uint32_t rseq_len = 0;
  uint32_t rseq_sig = 0;
  // Robust futex list (get_robust_list) and clear-child-tid address.
  uint64_t robust_head = 0;
  uint64_t robust_len = 0;
  uint64_t tid_address = 0;
  // Alternate signal stack; unknown for a thread caught in a signal-delivery stop.
  bool altstack_known = false;
  stack_t altstack{};
};

// Captures one stopped thread. `altstack` is what the thread told us itself (the caller of
// tsetjmp), or null: then it is asked with an injected sigaltstack().
Result<ThreadRecord> capture_thread(FrozenThread& t, const TargetInfo& target,
                                    const stack_t* altstack);

// A checkpoint's memory: a copy-on-write fork of the target made by a clone() injected into one
// of its stopped threads. It is a child of the target that sends no SIGCHLD (exit signal 0) and
// runs ckpt_rb_snapshot_park, never the program's code.
struct Snapshot {
  pid_t pid = 0;
  ScopedFd pidfd;

  // Sends SIGKILL (the target reaps it: it is the target's child).
  void kill();
  // Whether it still exists (not killed, not exited).
  bool alive() const;
};

Result<Snapshot> create_snapshot(FrozenThread& in, const TargetInfo& target, pid_t helper);

// One descriptor of the target at a checkpoint.
struct FdRecord {
  int fd = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  bool regular = false;  // a regular file: its offset is restored
  uint64_t pos = 0;
};

Result<std::vector<FdRecord>> list_fd_records(pid_t pid);

}  // namespace ckpt::rollback
