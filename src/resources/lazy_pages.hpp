#pragma once
// Lazy restore (`ckpt restore --lazy`, `ckpt run --lazy`): the private anonymous memory of a
// restored process is not copied before it runs. Its mappings are registered with a userfaultfd
// made inside the puppet and taken over by ckpt; a server thread in ckpt answers each page fault
// with the page from the image (checked against the hash in the page index) and meanwhile copies
// every other page in, address by address. When all of a process's pages are in, its userfaultfd
// is closed and the process runs as if restored the usual way.
//
// The process may change its memory meanwhile; the server follows it through the userfaultfd's
// events: pages it drops (madvise) or unmaps are never filled from the image again, moved
// mappings (mremap) take their pending pages along, and a fork() hands the server a userfaultfd
// for the child, which gets the pages its parent had not received yet.
//
// A page whose hash does not match (a damaged image) cannot be given: the server kills the
// restored processes (and their children) rather than let one read a wrong page, and wait()
// returns the error. The same happens when the server is destroyed before it finished.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "resources/context.hpp"
#include "resources/lazy_guard.hpp"
#include "resources/page_chain.hpp"

namespace ckpt::lazy_pages {

struct PageFiles;  // the open data files of a chain

struct Stats {
  uint64_t faults = 0;               // page faults answered
  uint64_t pages_on_fault = 0;       // pages copied to answer them
  uint64_t pages_prefetched = 0;     // pages copied in the background
  uint64_t zero_pages = 0;           // faults on pages the image does not hold
  std::chrono::nanoseconds took{0};  // from the first process added until all pages were in
};

// "complete in T ms: P pages on demand (F faults), B in the background"
std::string describe(const Stats& s);

class Server {
 public:
  // Starts the server thread (idle until a process is added).
  static Result<std::unique_ptr<Server>> start();
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Takes over `uffd` (registered for missing pages on the mappings that hold `pages`) of the
  // stopped process `pid`.
  Status add(pid_t pid, ScopedFd uffd, page_chain::PageLocations pages);
  // Every process and thread exists (a guard's PID can no longer be one the restore needs): the
  // guard is started in the background now, while the restore finishes.
  void start_guard();
  // No process will be added any more; the background copy begins (until then only faults are
  // answered) and the thread ends when every page is in. Returns once the guard holds the
  // processes' userfaultfds (or could not start): called before the processes are let go, so
  // that ckpt dying at any moment after takes them along (lazy_guard.hpp).
  void seal();
  // Until every page of every process is in (or its process ended); the error of a damaged page.
  Status wait();
  Stats stats() const;
  // The error that stopped it, if one did (a damaged page met while the processes were built).
  std::optional<Error> error() const;
  // Readable (for poll) once the server is done: wait() will not block.
  int done_fd() const { return done_fd_.get(); }

 private:
  struct Mm;
  Server() = default;
  void run();
  void serve_events(Mm& mm);
  void on_fault(Mm& mm, uint64_t addr);
  void zero_fill(Mm& mm, size_t i, uint64_t addr);
  void prefetch(Mm& mm);
  enum class Copied { ok, retry, gone };
  Copied copy(Mm& mm, size_t first, size_t count);
  Copied copy_read(Mm& mm, size_t first, size_t count);
  bool read_pages(Mm& mm, size_t first, size_t count);
  void guard_all();
  void fail(std::string message);
  void kill_all(bool loud);
  bool finished_locked() const;

  std::thread thread_;
  ScopedFd wake_;     // an eventfd: a process was added, or seal() / the destructor
  ScopedFd done_fd_;  // an eventfd, written once when done
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  std::vector<std::unique_ptr<Mm>> incoming_;  // added, not yet taken by the thread
  std::vector<std::unique_ptr<Mm>> mms_;       // the thread's own
  std::vector<pid_t> pids_;                    // every process added, to kill on failure
  bool sealed_ = false;
  bool stopping_ = false;
  bool done_ = false;
  std::optional<Error> error_;
  Stats stats_;  // given out under mu_ once done
  Stats live_;   // the thread's own
  std::chrono::steady_clock::time_point started_{};
  std::unique_ptr<std::byte[]> buffer_;
  // The thread's own: the guard against ckpt's death, started once the processes run.
  std::optional<Guard> guard_;
  bool guard_tried_ = false;
  bool guard_wanted_ = false;  // start_guard() or seal() was called
  bool guarded_ = false;       // guard_all() ran since
  uint32_t next_id_ = 0;
};

// Makes a userfaultfd inside the stopped puppet of ctx, takes it over and registers `ranges`
// (each a whole mapping) for missing pages. The puppet keeps no descriptor of it.
Result<ScopedFd> open_in_puppet(RestoreContext& ctx,
                                const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

// Writes `pages` into the stopped puppet of ctx now, each checked against its hash: the pages a
// lazy restore cannot leave to the server.
Status write_now(RestoreContext& ctx, const page_chain::PageLocations& pages);

}  // namespace ckpt::lazy_pages
