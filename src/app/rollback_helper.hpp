#pragma once
// The rollback helper: a process the target starts (the program re-executed, see
// rollback_spawn.cpp) that takes and keeps checkpoints of the target and rolls it back. A
// process cannot ptrace itself, and the memory of a process that may be corrupted is the last
// place to keep the means of repairing it: the helper's own memory is out of the program's reach.
#include <sys/types.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "app/rollback_capture.hpp"
#include "app/rollback_maps.hpp"
#include "app/rollback_memory.hpp"
#include "app/rollback_shared.hpp"
#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "ptrace/remote_syscalls.hpp"

namespace ckpt::rollback {

constexpr int kDefaultKeep = 8;
constexpr int kMaxKeep = 64;
constexpr int kMaxPinned = 32;
constexpr size_t kMaxPersistRanges = 64;
constexpr uint64_t kMaxPersistBytes = 64ull << 20;
constexpr uint64_t kMaxCacheBytes = 64ull << 20;

struct Checkpoint {
  int id = 0;
  bool pinned = false;
  pid_t caller = 0;      // the thread that called tsetjmp()
  uint64_t request = 0;  // the id of its request, which a rollback here answers again
  Snapshot snapshot;
  std::vector<ThreadRecord> threads;
  std::vector<proc::MapEntry> maps;
  std::vector<FdRecord> fds;
  std::array<KernelSigaction, kNsig> handlers{};
  bool handlers_valid = false;
  uint64_t heap_end = 0;  // end of [heap], or start_brk when there is none
  // Pages that may have changed since this checkpoint, up to the last write-protection reset.
  RangeSet dirty;
};

// Step timings of one request, logged at debug level ("rollback" module).
class StepTimer {
 public:
  explicit StepTimer(const char* what);
  void step(const char* name);
  ~StepTimer();

 private:
  const char* what_;
  std::string text_;
  uint64_t start_ns_, last_ns_;
};

struct PersistRange {
  uint64_t addr = 0;
  uint64_t size = 0;
};

class Helper {
 public:
  // `base` is the shared area as mapped here; `uffd` the target's userfaultfd or -1.
  Helper(pid_t target, void* base, int uffd);
  Status open();

  // Carries out rw->req and fills rw->rep (before the target's threads are let go).
  void handle();
  // Work left for after the answer: killing the snapshots of dropped checkpoints.
  void after_answer();
  // Kills every snapshot (the helper is ending).
  void shutdown();

 private:
  Result<int> checkpoint(const Request& req);
  Result<int> rollback(const Request& req);
  Status persist(const Request& req);
  Status cache_in(const Request& req);
  Status cache_out(const Request& req);
  Status pin(const Request& req, bool on);
  Status set_keep(const Request& req);

  Checkpoint* find(int id);
  // Drops unpinned checkpoints beyond the retention limit (the oldest first).
  void apply_retention();
  void drop(std::unique_ptr<Checkpoint> c);
  // Hands a killed snapshot to the target for reaping.
  void reap_later(pid_t pid);
  void publish_status();
  // Writes the reply to the current request (or to request `id`).
  void answer(Answer a, int result, const Error* err, uint64_t id = 0);
  // Registers mappings of the target that are not yet tracked for writes.
  Status track_new_mappings(const std::vector<proc::MapEntry>& maps);
  // Parts of rollback() (rollback_restore.cpp).
  std::vector<std::pair<PersistRange, std::vector<uint8_t>>> save_persistent();
  void restore_persistent(const std::vector<std::pair<PersistRange, std::vector<uint8_t>>>& kept);
  // brk, mappings, then pages, through injected system calls.
  Status restore_memory(ptrace::RemoteSyscalls& rs, const Checkpoint& cp, StepTimer& timer);
  // Copies back the pages that differ from the checkpoint.
  Status restore_pages(const Checkpoint& cp, const MapPlan& plan,
                       const std::vector<proc::MapEntry>& now, StepTimer& timer);
  // Status, discarded checkpoints, and the lock, which `caller` (the thread that took `cp`,
  // perhaps under a new tid) holds again.
  void finish_rollback(Checkpoint& cp, int sig, pid_t caller);

  pid_t target_;
  pid_t self_;
  RwArea* rw_;
  RoArea* ro_;
  int uffd_;
  TargetInfo info_;
  ScopedFd mem_;
  std::unique_ptr<PageScanner> scanner_;
  std::vector<std::unique_ptr<Checkpoint>> kept_;  // oldest first
  std::vector<std::unique_ptr<Checkpoint>> to_drop_;
  int next_id_ = 1;
  uint64_t request_id_ = 0;  // the request being handled
  int keep_ = kDefaultKeep;
  int current_state_ = 0;
  std::vector<PersistRange> persist_;
  std::map<uint64_t, std::vector<uint8_t>> cache_;
  uint64_t cache_bytes_ = 0;
  // Crash-loop detection: the last rollback's target and signal, and how many in a row.
  int last_to_ = 0;
  int last_sig_ = -1;
  int loopcount_ = 0;
  uint64_t last_restored_bytes_ = 0;
  std::vector<uint8_t> copy_buf_;  // touched once, so that copies fault no page in
};

// The helper's main loop: runs until the target ends, execs or closes its socket. Returns the
// exit status.
int run_helper(int memfd, int sock, int uffd);

}  // namespace ckpt::rollback
