#pragma once
// What the per-resource code shares while dumping or restoring one process. Resources fill or
// read their own records of the process image (image/schema/records.hpp) and may stream bulk data
// into sections of their own.
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "arch/x86_64/syscall_restart.hpp"
#include "common/byte_progress.hpp"
#include "common/cpu_pin.hpp"
#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "image/schema/records.hpp"
#include "image/store.hpp"
#include "proc/maps.hpp"
#include "proc/pagemap.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "ptrace/tracee.hpp"
#include "resources/taken_signal.hpp"

namespace ckpt {

class PreCopied;

namespace cow_shared {
class Base;
}

namespace page_index {
struct DumpState;
}

namespace lazy_pages {
class Server;
}

// Scratch memory inside a stopped tracee that injected calls can use for their arguments and
// results. At dump time it is borrowed from below the stack pointer of the thread (beyond the
// red zone) and put back afterwards; at restore time it is the restorer's own page.
struct RemoteScratch {
  uint64_t addr = 0;
  size_t size = 0;
};

struct ThreadHandle {
  pid_t tid = 0;
  ptrace::Tracee tracee;
  // After the tracee: ends first, while the thread is still stopped.
  TakenSignal taken;
  // On its tracer's CPU while stopped (cpu_pin.hpp); its own mask back before anything else.
  CpuPin pin;
};

// What the processes of one dumped tree share: the image's tree-wide records (open files,
// deleted files, shared memory objects), each saved once however many processes use it.
struct TreeState {
  pid_t root = 0;                          // the process the dump was asked for
  ByteProgress* progress = nullptr;        // memory copied so far; always set
  page_index::DumpState* pages = nullptr;  // the parent of an incremental dump, page counts
  schema::ImageRoot image;
  // Every (pid, fd) that refers to each open file (by id), and open files by (dev, ino): a new
  // fd is compared (kcmp) only with open files of its own inode.
  std::vector<std::vector<std::pair<pid_t, int>>> holders;
  std::multimap<std::pair<uint64_t, uint64_t>, uint32_t> open_files_by_inode;
  std::map<std::pair<uint64_t, uint64_t>, int> deleted_ids;  // (dev, ino) -> id
  std::map<std::pair<uint64_t, uint64_t>, int> shm_ids;      // shared memory objects
  std::vector<ScopedFd> in_flight;  // ckpt's copies of fds in flight: later fds are kcmp'd to them
  // smaps of the processes found before the freeze, for a dump with snapshots (vm_flags.hpp).
  std::map<pid_t, std::vector<proc::MapEntry>> early_maps;
  // By TID: the threads found sleeping in restart_syscall before the freeze, with the call each
  // resumes (threads::resumed_calls).
  std::map<pid_t, arch::ResumedCall> resumed_calls;
  // Size and modification time of each file the tree maps, by (device major, minor, inode).
  using FileKey = std::tuple<unsigned, unsigned, uint64_t>;
  std::map<FileKey, std::pair<uint64_t, int64_t>> mapped_files;
  // Whether a userfaultfd of this machine sends fork events, looked up (under mu) the first time
  // a process has memory registered with one that is not the dump's own (memory.cpp).
  std::optional<bool> uffd_fork_events;
  // For what processes read at once (TracerCrew) write here: the image's vdso, mapped_files.
  std::mutex mu;
};

// Sections of the tree's root keep their plain names (an image of one process reads as before);
// those of every other process are prefixed with "proc.PID.".
std::string section_prefix(pid_t pid, bool root);

struct DumpContext {
  pid_t pid = 0;
  std::string section_prefix;
  TreeState* tree = nullptr;  // shared by every process of the dump; always set
  bool zombie = false;        // ended, not yet waited for: nothing but its exit status to save
  int tracer_cpu = -1;        // the CPU of the crew member that traces it, if pinned
  std::vector<ThreadHandle> threads;  // threads[0] is the main thread (tid == pid)
  std::vector<proc::MapEntry> maps;
  bool flags_early = false;   // maps' VmFlags are those read before the freeze (vm_flags.hpp)
  bool flags_fast = false;    // or they come from the BPF iterator (and maps has no page counts)
  uint64_t syscall_insn = 0;  // a `syscall` instruction in the target (in its vdso)
  // The self-restore gadgets once found: the code does not change while the process is stopped,
  // and each injection would otherwise scan the C library again.
  ptrace::SelfRestore gadgets;
  image::GenerationWriter* writer = nullptr;
  schema::ProcessRecord rec;  // this process's part of the image
  // Write tracking (write_tracking.hpp): `uw` VmFlags are ckpt's own registration, and the
  // pages not written since the parent generation, which an incremental dump need not read.
  bool write_tracked = false;
  std::vector<proc::PageRange> unchanged;
  // Found by the same pass that renewed the write protection: the pages with data of their own
  // (memory::hold_changed's pages) inside `tracked`, the mappings the protection covers.
  struct OwnPages {
    std::vector<proc::PageRange> tracked, own;
  } own_pages;
  // A pre-copy dump (dump/pre_copy.hpp): the pages copied while the process ran, from which the
  // unchanged ones are taken instead of from a parent generation.
  const PreCopied* pre_copied = nullptr;

  std::string section(std::string_view base) const { return section_prefix + std::string(base); }

  // Runs `fn` with injected-syscall access to thread `index` and scratch memory in it; the
  // thread's registers, signal mask and the borrowed memory are put back afterwards.
  Status with_remote(size_t index, size_t scratch_size,
                     const std::function<Status(ptrace::RemoteSyscalls&, RemoteScratch)>& fn);

  // One injection into a thread, kept open across with_remote() calls (HeldRemote).
  struct OpenRemote;
  std::shared_ptr<OpenRemote> held_remote;
};

// While it lives, every with_remote() on its thread that asks for no more scratch than it holds
// runs in one injection, started once and ended with it, instead of starting and ending its own
// (a few ptrace round trips each, 0.1-0.2 ms here, paid while the tree is frozen). Meanwhile the
// thread's registers and signal mask are the injection's: nothing may read them.
class HeldRemote {
 public:
  static Result<HeldRemote> start(DumpContext& ctx, size_t index, size_t scratch_size);
  HeldRemote(HeldRemote&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  HeldRemote(const HeldRemote&) = delete;
  HeldRemote& operator=(const HeldRemote&) = delete;
  HeldRemote& operator=(HeldRemote&&) = delete;
  ~HeldRemote() { (void)end(); }
  // Puts the thread's registers, mask and borrowed memory back; the first failure is returned.
  Status end();

 private:
  explicit HeldRemote(DumpContext* ctx) : ctx_(ctx) {}
  DumpContext* ctx_;
};

// Descriptors the restorer hands to every puppet, by key: files to map, recreated deleted files,
// open files shared between processes. Inside a puppet `fds` hold the puppet's own numbers.
struct HandedFds {
  std::vector<int> fds;
  std::vector<std::string> keys;
  int find(std::string_view key) const;  // -1 when absent
};

struct RestoreContext {
  pid_t pid = 0;
  std::string section_prefix;
  const image::Store* store = nullptr;
  image::GenerationInfo generation;
  const schema::ImageRoot* image = nullptr;
  const schema::ProcessRecord* rec = nullptr;  // this process's part of the image
  std::vector<ThreadHandle> threads;           // threads[0] is the main thread, created first
  uint64_t trampoline = 0;  // the restorer page: a syscall instruction, then scratch
  RemoteScratch scratch;
  ptrace::RemoteSyscalls* main_remote = nullptr;
  bool shell_job = false;
  // The kernel's vdso differs from the image's: a proxy goes at the old address (vdso.hpp).
  bool vdso_proxy = false;
  ByteProgress* progress = nullptr;  // memory filled so far, tree-wide; always set
  // Descriptors the puppet holds for mapping files, keyed by path; closed before it runs.
  std::map<std::string, int> mapping_fds;
  // Memory the puppet shares copy-on-write with the restorer and the other puppets.
  const cow_shared::Base* base = nullptr;
  // Set for a lazy restore: private anonymous pages are left to it (lazy_pages.hpp).
  lazy_pages::Server* lazy = nullptr;
  // The puppet's CPU mask before it was pinned to its builder's CPU (cpu_pin.hpp), which its
  // threads inherit: what a thread gets back whose image records no mask. Empty if not pinned.
  std::vector<uint64_t> mask_before_pin;
  // Open files opened in the restorer once every process existed, by id (files::open_after_tree).
  const std::map<uint32_t, ScopedFd>* late_files = nullptr;

  std::string section(std::string_view base) const { return section_prefix + std::string(base); }
};

// Copies between ckpt and a tracee's memory (process_vm_readv/writev, /proc/PID/mem for pages
// the tracee cannot read or write itself).
Status read_remote(pid_t pid, uint64_t addr, void* buf, size_t len);
Status write_remote(pid_t pid, uint64_t addr, const void* buf, size_t len);
// Many copies, local[i] to remote[i] (same lengths), in as few calls as the kernel takes.
Status write_remote_runs(pid_t pid, std::span<const iovec> local, std::span<const iovec> remote);

}  // namespace ckpt
