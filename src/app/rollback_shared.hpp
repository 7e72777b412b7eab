#pragma once
// The memory the rollback API shares between a program (the "target") and its helper process.
//
// It is a memfd mapped MAP_SHARED by both. Shared mappings are never rolled back, so whatever
// lives here survives a tlongjmp(): the request/answer protocol, the lock, the status the
// program reads with chkpt_status(). The target maps the first half read-write (it writes its
// requests there) and the second half read-only, so that a wild pointer in the program cannot
// corrupt the status; the helper maps both halves read-write. The layout is only ever seen by
// one build of libckpt (the helper is the program itself, re-executed), so it has no version.
#include <poll.h>
#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace ckpt::rollback {

constexpr size_t kRwSize = 16384;
constexpr size_t kRoSize = 16384;
constexpr size_t kSharedSize = kRwSize + kRoSize;
constexpr uint32_t kMagic = 0x72626b31;  // "rbk1"
constexpr int kNsig = 64;
constexpr int kReapRing = 128;

// The environment variable that turns a re-executed program into the helper:
// "MEMFD,SOCKET,UFFD" (UFFD is -1 without userfaultfd).
inline constexpr const char* kHelperEnv = "CKPT_ROLLBACK_HELPER";

enum class Op : uint32_t {
  none = 0,
  hello,  // the helper is up: answers once it has opened the target
  checkpoint,
  rollback,
  persist,
  cache_in,
  cache_out,
  pin,
  unpin,
  set_keep,
};

// struct sigaction as the kernel's rt_sigaction takes it on x86-64 (not glibc's layout).
struct KernelSigaction {
  uint64_t handler = 0;
  uint64_t flags = 0;
  uint64_t restorer = 0;
  uint64_t mask = 0;
  bool operator==(const KernelSigaction&) const = default;
};

// What the calling thread asks for. Written by the target while it holds `lock`.
struct Request {
  uint64_t id = 0;  // answered by the Reply with the same id
  uint32_t op = 0;
  int32_t tid = 0;  // the calling thread
  int64_t arg = 0;  // checkpoint descriptor, keep count, cache direction...
  uint64_t addr = 0;
  uint64_t size = 0;
  uint64_t old_mask = 0;                 // the caller's signal mask before the call
  KernelSigaction handlers[kNsig] = {};  // index sig-1; read by the caller just before asking
  int32_t handlers_valid = 0;
  int32_t altstack_valid = 0;
  stack_t altstack = {};  // the caller's sigaltstack
};

enum class Answer : uint32_t {
  done = 0,         // the request was carried out (or failed: see result/err)
  rolled_back = 1,  // this thread is back in tsetjmp() after a rollback
};

struct Reply {
  // The request answered. A rollback answers the tsetjmp() request that took the checkpoint:
  // the thread it resumes is waiting for that one.
  uint64_t id = 0;
  uint32_t answer = 0;  // Answer
  int32_t result = 0;
  int32_t err = 0;  // errno when result < 0
  int32_t pad = 0;
  char message[480] = {};
};

// What chkpt_status() reports. Written only by the helper.
struct SharedStatus {
  int32_t recovered = 0;      // CHKPT_RECOVERED
  int32_t from_state = 0;     // CKPT_FROM_STATE (valid once recovered)
  int32_t to_state = 0;       // CKPT_TO_STATE
  int32_t sigtype = 0;        // CKPT_SIGTYPE
  int32_t numchkpts = 0;      // CKPT_NUMCHKPTS: descriptors handed out so far
  int32_t numrecoveries = 0;  // CKPT_NUMRECOVERIES
  int32_t rolled_back = 0;    // CKPT_ROLLEDBACK: no tsetjmp() since the last rollback
  int32_t loopcount = 0;      // CKPT_LOOPCOUNT
  int32_t kept = 0;           // CKPT_NUMKEPT
  int32_t current_state = 0;  // CKPT_CURSTATE
  int32_t keep_limit = 0;
  int32_t newest = 0;  // the newest checkpoint kept, 0 if none
  // Snapshot processes the helper killed; the target reaps them (they are its children).
  uint64_t reap_count = 0;
  int32_t reap[kReapRing] = {};
};

// Written by the target (and by the helper).
struct RwArea {
  uint32_t magic = 0;
  uint32_t lock = 0;  // futex: 0 free, else the tid of the owner
  uint32_t seq = 0;   // futex: the helper bumps it after each answer
  int32_t target_pid = 0;
  int32_t helper_pid = 0;
  int32_t helper_ready = 0;
  // Where the target mapped this area (the helper's mapping is elsewhere).
  uint64_t target_base = 0;
  // Addresses inside the target (and so inside every snapshot): see rollback_gadgets.S.
  uint64_t syscall_gadget = 0;
  uint64_t park_entry = 0;
  // &struct pthread::tid minus the thread pointer: where the kernel clears a thread's tid at its
  // exit (CLONE_CHILD_CLEARTID), needed to recreate a thread exactly. 0 when unknown.
  int64_t tid_address_offset = 0;
  // Crash-loop callback (a function of the target) and its threshold.
  uint64_t crashloop_fn = 0;
  uint64_t crashloop_arg = 0;
  int32_t crashloop_threshold = 0;
  int32_t pad0 = 0;
  uint64_t reaped = 0;   // entries of SharedStatus::reap the target has handled
  uint64_t last_id = 0;  // the last request id handed out
  Request req;
  Reply rep;
  // The pollfd every snapshot waits on (fd 0 = a pidfd of the helper) and the name it takes.
  struct pollfd snap_poll = {};
  char snap_name[16] = {};
  // Arguments of system calls the helper injects into the target (paths, structs).
  alignas(64) uint8_t scratch[4096] = {};
};
static_assert(sizeof(RwArea) <= kRwSize);

struct RoArea {
  SharedStatus status;
};
static_assert(sizeof(RoArea) <= kRoSize);

inline RwArea* rw_area(void* base) {
  return static_cast<RwArea*>(base);
}
inline RoArea* ro_area(void* base) {
  return reinterpret_cast<RoArea*>(static_cast<char*>(base) + kRwSize);
}

}  // namespace ckpt::rollback

extern "C" {
// rollback_gadgets.S
void ckpt_rb_syscall_gadget();
void ckpt_rb_snapshot_park();
}
