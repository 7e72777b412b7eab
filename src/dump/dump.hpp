#pragma once
// Dumping a running process into a new generation of a store (the transparent engine).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "image/store.hpp"

namespace ckpt {

namespace write_tracking {
class Tracker;
}

struct DumpResult {
  image::GenerationInfo generation;
  std::chrono::nanoseconds frozen{0};  // how long the process was stopped
  std::chrono::nanoseconds total{0};
};

struct DumpOptions {
  pid_t pid = 0;
  bool leave_running = false;  // otherwise the process is killed once the image is on disk
  // With leave_running: the processes are let go once a copy-on-write snapshot of their memory
  // is taken (dump/snapshot.hpp), and the pages are copied from it while they run. Off, or where
  // a snapshot cannot be taken, their memory is copied while they are stopped.
  bool snapshot = true;
  // With snapshot: the VmFlags of the mappings are read before the freeze and checked against
  // the snapshot afterwards (resources/vm_flags.hpp); the dump is taken again with them read
  // while stopped when they changed meanwhile.
  bool early_flags = true;
  // With leave_running and snapshot: the private memory is copied while the processes run, and
  // the freeze reads only what they wrote meanwhile (dump/pre_copy.hpp). Not with an incremental
  // dump or a tracker, which know the unchanged pages by their own means.
  bool pre_copy = false;
  bool shell_job = false;  // the process's terminal is taken from ckpt's own at restore
  image::WriteOptions write;
  // Store only the pages that changed since the newest generation of the same process
  // (resources/page_index.hpp); a full dump when there is none.
  bool incremental = false;
  // Write tracking kept by a caller that dumps the same processes again (resources/
  // write_tracking.hpp): an incremental dump then does not read the pages not written since its
  // parent. Every dump with a tracker renews the tracking of the processes it dumps.
  write_tracking::Tracker* tracker = nullptr;
  // Processes that must not count as children of the target (the in-process API's helper).
  std::vector<pid_t> ignore_children;
  // Called in the dumping process once every thread is stopped, and once all of the target's
  // state (memory included) has been read, before its threads are let go. The in-process API
  // (ckpt_dump) writes a word of memory it shares with the target in them, so that the image
  // and the process that goes on see different values.
  std::function<void()> on_frozen;
  std::function<void()> on_memory_read;
  // Called now and then with the bytes written so far and the expected total (0 while unknown),
  // from the process that writes the image.
  std::function<void(uint64_t done, uint64_t total)> progress;
  // CRIU's --file-locks, --tcp-established, --ext-unix-sk: permission to save held file locks,
  // established TCP connections and unix sockets whose peer is outside the tree.
  bool file_locks = false;
  bool tcp_established = false;
  bool ext_unix_sk = false;
  // CRIU's --tcp-close: established connections saved without their state (no lock, no repair
  // mode: nothing changes for them), to come back closed; a listener's waiting connections are
  // left out. For recovery after a crash, when the peers have lost the connections anyway.
  bool tcp_close = false;
  // CRIU's --skip-in-flight: a listener's connections waiting to be accepted are left out (their
  // clients lose them) instead of refusing the dump; --tcp-close implies it.
  bool skip_in_flight = false;
  // Set in a dumper inside the PID namespace whose init it dumps (dump/ns_init.hpp): the caller
  // kills the tree, since the init ignores a SIGKILL from inside. Returns only if it did not.
  std::function<Status(const DumpResult&)> kill_from_outside;
};

// Dumps opts.pid into `store`. Whatever fails, the process is left running as before and
// untraced, and the store keeps the generations it had.
Result<DumpResult> dump_process(image::Store& store, const DumpOptions& opts);

}  // namespace ckpt
