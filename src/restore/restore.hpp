#pragma once
// Restoring a process from a generation of a store (the transparent engine).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "image/store.hpp"
#include "resources/fds/inherit_fd.hpp"

namespace ckpt {

namespace lazy_pages {
class Server;
}

struct RestoreOptions {
  // The generation to restore; the newest valid one when empty.
  std::optional<std::string> generation;
  // Give the restored process the caller's stdin/stdout/stderr and terminal instead of the
  // ones it had (needed when it was started from another shell or pipeline).
  bool shell_job = false;
  // Restore even when an open or mapped file changed size since the dump (logs appended to by
  // others); by default that is an error naming the file.
  bool accept_changed_files = false;
  // Read and check the image and everything it needs here (kernel, PIDs, credentials, mapped
  // files) and plan the processes, but create nothing: RestoreResult::pid is the root's PID.
  bool dry_run = false;
  // Put a proxy at the old vdso address even when this kernel's vdso is the image's (what
  // happens anyway when it differs): tests the way an image survives a kernel update.
  bool force_vdso_proxy = false;
  // Called now and then with the bytes read so far and the total to read (0 while unknown).
  std::function<void(uint64_t done, uint64_t total)> progress;
  // CRIU's --file-locks, --tcp-established, --ext-unix-sk (see DumpOptions).
  bool file_locks = false;
  bool tcp_established = false;
  bool ext_unix_sk = false;
  // CRIU's --tcp-close: every connection of the image comes back closed (see DumpOptions).
  bool tcp_close = false;
  // Open files of the caller that stand for open files of the image (--inherit-fd).
  std::vector<InheritFd> inherit_fds;
  // Let the processes run before their private anonymous memory is in: a page server thread
  // of the caller fills it on demand and in the background (resources/lazy_pages.hpp).
  bool lazy = false;
};

struct RestoreResult {
  pid_t pid = 0;  // the restored process, a child of the caller, already running
  // Its PID in the new PID namespace it is the init of (1), when the image's root was the init
  // of its own (pid_ns::restore_as_init); else 0.
  pid_t ns_pid = 0;
  image::GenerationInfo generation;
  std::chrono::nanoseconds took{0};
  // Newer generations passed over because they are damaged, newest first.
  std::vector<image::Problem> skipped;
  // A lazy restore's page server, still filling memory: wait() on it before checkpointing the
  // processes again; destroying it early kills them. Null when everything was filled at once.
  std::shared_ptr<lazy_pages::Server> lazy;
};

// Restores a process as a child of the calling process and lets it run. On failure nothing is
// left behind (no half-built process).
Result<RestoreResult> restore_process(const image::Store& store, const RestoreOptions& opts);

}  // namespace ckpt
