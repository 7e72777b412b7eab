#pragma once
// Memory: every mapping of the process with its address, size, protection, flags and the pages
// that cannot be found elsewhere (anonymous pages, copy-on-write copies of file pages, contents
// of deleted files and shared anonymous memory). Dump and restore side by side.
#include "common/populate.hpp"
#include "resources/context.hpp"

namespace ckpt::page_index {
struct Index;
}  // namespace ckpt::page_index

namespace ckpt::memory {

inline constexpr const char* kPagesSection = "memory.pages";

// Records the mappings in ctx.rec.memory and streams their pages into kPagesSection.
Status dump(DumpContext& ctx);

// The same in two steps, for a dump that copies the private pages from a snapshot of the process
// (dump/snapshot.hpp) after letting it go: prepare() while it is stopped, write_pages() later.
struct Plan {
  // A piece of what a process's pages section gets, in address order: pages to read, or pages
  // write tracking knows unchanged, which take the parent's index entries unread.
  struct Piece {
    uint64_t start = 0, end = 0;
    bool inherit = false;
  };
  struct Item {
    size_t vma = 0;  // index in ctx.rec.memory.vmas
    uint64_t start = 0, end = 0;
    bool scan = false;  // private pages, found in the source's pagemap by write_pages()
    std::vector<std::pair<uint64_t, uint64_t>> ranges;     // otherwise what to save
    HugeVector<char> data;                                 // their bytes, read while stopped
    std::vector<std::pair<uint64_t, uint64_t>> from_root;  // left out: the root saves them
    // A private file mapping: its page-cache pages are left to the file. Asking the kernel to
    // tell them from private copies costs a look at every page, so only these ask.
    bool file = false;
    // Read while stopped by hold_changed(): `held_bytes` holds the pieces to read, back to back
    // (in `data`, or in DumpState::held_room).
    bool held = false;
    std::vector<Piece> pieces;
    std::span<const char> held_bytes;
  };
  std::vector<Item> items;
  bool snapshot = false;       // the private pages may come from a snapshot
  uint64_t stopped_bytes = 0;  // what had to be read while stopped for that
};
// Inherited pieces (`pieces` in address order) cut where `parent` has no entry: the pages it
// lacks are read instead.
std::vector<Plan::Piece> only_what_parent_has(const std::vector<Plan::Piece>& pieces,
                                              const page_index::Index& parent);
// Records the mappings and saves shared memory objects. With `snapshot`, also reads now what a
// fork() would not copy as it is (shared memory, MADV_DONTFORK, MADV_WIPEONFORK areas); the
// plan's `snapshot` says false when that is not possible or too large.
Result<Plan> prepare(DumpContext& ctx, bool snapshot);
// An incremental dump with write tracking (write_tracking.hpp), or a pre-copy dump
// (dump/pre_copy.hpp), while the process is stopped: when the pages written since the parent (or
// since the pre-copy) are few, reads them now (no snapshot is needed then) and returns true;
// write_pages() later writes them and takes the others from the parent (or the pre-copy). False,
// with nothing done, when they are not few.
Result<bool> hold_changed(DumpContext& ctx, Plan& plan);
// hold_changed() reads at most this much while a process is stopped.
inline constexpr uint64_t kMaxHeld = 64 << 20;
// Streams the pages into kPagesSection; private pages of forked areas are read from `source`
// (the process itself, or a snapshot of it), the rest from the process or the plan. Pages the
// plan marks as the root's (leave_out_shared_with_root) are listed in Vma.from_root instead.
Status write_pages(DumpContext& ctx, Plan& plan, pid_t source);

// Stored once (cow_shared.hpp): marks in `child`'s plan the private pages that are physically
// the root's page at the same address (the same frame in both pagemaps, so the same bytes), which
// its pages section then leaves out. The frames are read from `child_source` and `root_source`:
// the processes themselves while the tree is stopped, or their snapshots (forks taken while it
// was, which keep those frames). Nothing for an incremental generation.
Status leave_out_shared_with_root(const DumpContext& root, pid_t root_source, DumpContext& child,
                                  pid_t child_source, Plan& plan);

// Refuses shared memory saved by contents (shared anonymous, memfd, deleted file) that more
// than one process of a tree maps, naming it.
Status check_not_shared_between(const std::vector<DumpContext*>& procs);

// The files restore must open before the puppet exists (path and whether writable).
struct MappedFile {
  std::string path;
  bool writable = false;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
std::vector<MappedFile> files_to_map(const schema::ProcessRecord& proc);
std::string mapping_fd_key(const std::string& path, bool writable);

// Addresses the restorer must not use for its own page (every mapping of the image).
std::vector<std::pair<uint64_t, uint64_t>> used_ranges(const schema::ProcessRecord& proc);

// Replaces the puppet's address space with the image's: unmaps the puppet's own mappings (all
// but the trampoline and the vdso), moves the vdso to its old address, maps and fills every
// mapping. Runs in the puppet through ctx.main_remote.
Status restore(RestoreContext& ctx);
// In a puppet, once its children exist (they start from its memory): gives the mappings it keeps
// from the base their protection for the restore. Done here, each costs a plain mprotect rather
// than an injected call (two ptrace stops).
Status protect_kept_in_puppet(const schema::ProcessRecord& rec, const cow_shared::Base& base);

}  // namespace ckpt::memory
