#pragma once
// Memory shared copy-on-write between a parent and the children it forked (issue 11, point 5): a
// forked server's workers hold most of their memory in pages they share with it, and must not
// each get a copy of their own at restore.
//
// Before the first puppet is forked, the restorer maps the root's private mappings that
// another process of the image has at the same place, and fills them with the root's pages (the
// "base"). Every puppet is a fork of the restorer and starts with them, sharing their pages. Each
// process's build (memory.cpp) then keeps those mappings instead of making new ones, writes only
// the pages whose contents differ from the base (compared with the restorer's own copy, which is
// at the same address) and drops the base's pages it did not have. A page that differs stops
// being shared for that process alone, as a write after fork() would.
//
// Stored once: at dump, while the tree is stopped, a child's page that is physically the root's
// page at the same address (the same frame in /proc/PID/pagemap, so the same bytes) is not saved
// again: its mapping lists it in `from_root` (full generations only; an incremental one stores
// what changed against its parent, per process). The build keeps such pages from the base; for a
// mapping the restorer could not place, the base keeps the root's pages aside and they are
// written like saved ones.
//
// CKPT_FAULT_NO_PREMAP (tests) makes every placement fail, as if the restorer's own memory were
// in the way.
//
// Limits: the root is the base (a grandchild shares what it has in common with the root, not
// what it shares only with its own parent); a mapping the restorer cannot place (its own code or
// data is there) is restored copied, as before; so are incremental generations.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "common/result.hpp"
#include "image/schema/records.hpp"
#include "image/store.hpp"

namespace ckpt::cow_shared {

// One mapping of the base, at the same place in the restorer and in every puppet.
struct Area {
  const schema::Vma* root = nullptr;  // the root's mapping it was made as
  // The root's saved pages in it: what the base holds.
  const std::vector<schema::Range>& filled() const { return root->pages; }
  uint64_t start() const { return root->start; }
  uint64_t end() const { return root->end; }
};

// The base the restorer holds; unmapped when it goes (the puppets keep their own).
class Base {
 public:
  Base() = default;
  Base(Base&& o) noexcept;
  Base& operator=(Base&& o) noexcept;
  Base(const Base&) = delete;
  Base& operator=(const Base&) = delete;
  ~Base();

  // The area placed where `v` is (holding it, see holds()), when `v` can share it.
  const Area* find(const schema::Vma& v) const;
  bool empty() const { return areas_.empty() && aside_.empty(); }
  uint64_t bytes() const;
  // Writes the root's pages of `ranges` into process `pid`, from the copies kept aside for
  // mappings that could not be placed; an error names a page the root did not save.
  Status write_aside(pid_t pid, const std::vector<schema::Range>& ranges) const;

 private:
  friend Result<Base> premap(const image::Store&, const image::GenerationInfo&,
                             const schema::ImageRoot&);
  void release();
  std::vector<Area> areas_;
  std::map<uint64_t, std::vector<std::byte>> aside_;  // root's saved ranges, by start address
};

// Whether the root's mapping `root` covers the child's `child` with the same kind of memory
// behind it (at the same file offset): what fork() makes, before either side maps more next to
// it (which the kernel may merge into one mapping on one side only).
bool holds(const schema::Vma& root, const schema::Vma& child);

// Private memory, anonymous or of a file, as fork() shares it (not MADV_DONTFORK or WIPEONFORK
// areas, not deleted files).
bool shareable(const schema::Vma& v);

// Maps and fills the base in the calling process (the restorer, before it forks any puppet).
Result<Base> premap(const image::Store& store, const image::GenerationInfo& gen,
                    const schema::ImageRoot& image);

}  // namespace ckpt::cow_shared
