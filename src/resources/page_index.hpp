#pragma once
// Page indexes and incremental dumps (docs/image-format.md, "Incremental generations").
//
// Every dump writes, next to a process's pages section, a page index: one entry per saved page,
// in section order, with the page's address, an XXH3-64 of its 4 KiB and whether the page is
// stored in this generation or inherited from the parent generation. An incremental dump hashes
// every page it reads and writes only those whose hash differs from the parent's entry at that
// address; pages that write tracking (write_tracking.hpp) knows were not written since the parent
// are not read at all and take the parent's entry. Restore takes each inherited page from the
// generation that stores it.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/populate.hpp"
#include "common/result.hpp"
#include "image/store.hpp"

namespace ckpt::page_index {

inline constexpr const char* kIndexSection = "memory.index";
inline constexpr uint64_t kPage = 4096;
// Encodings of a page index (its header's format field); a reader refuses others by name.
// Full: every entry with its hash. Delta: the stored entries and the runs of inherited pages,
// whose hashes are the parent's: 1 % of 1 GiB changed makes 40 KiB instead of 4 MiB to write.
inline constexpr uint32_t kFullFormat = 1;
inline constexpr uint32_t kDeltaFormat = 2;
// Reading a delta index reads its ancestors' down to a whole one: after this many deltas in a
// row the next index is whole again (4 MiB per GiB once, instead of a longer read every time).
inline constexpr size_t kMaxDeltas = 8;

// Laid out as in the section (little-endian): the index is written and read by whole arrays.
struct Entry {
  Entry() = default;
  Entry(uint64_t addr, uint64_t hash, bool stored) : key(addr | (stored ? 1 : 0)), hash(hash) {}
  uint64_t addr() const { return key & ~(kPage - 1); }
  // In this generation's pages section; else inherited from the parent.
  bool stored() const { return (key & 1) != 0; }

  uint64_t key = 0;  // the page's address; bit 0 says "stored here"
  uint64_t hash = 0;
};
static_assert(sizeof(Entry) == 16);

struct Index {
  HugeVector<Entry> entries;  // strictly ascending addresses
  // The entry for `addr`, or null.
  const Entry* find(uint64_t addr) const;
  // The position of the first entry at or above `addr`, searched from position `from` on.
  size_t first_at_or_above(uint64_t addr, size_t from = 0) const;
  uint64_t stored_count() const;
};

// The full encoding when every page is stored, else the delta one.
std::vector<std::byte> encode(const Index& index);
// encode() straight into section `name` of `out`, without a copy of the entries; `whole` writes
// the full encoding even when pages are inherited.
Status write(image::GenerationWriter& out, std::string_view name, const Index& index,
             bool whole = false);
// The format field of an encoded index, 0 if it is not one.
uint32_t format_of(std::span<const std::byte> bytes);
// `what` names the section in errors. Checks the header, the size and the order of addresses. A
// delta index needs `parent`, the whole index of the generation it was made from: its inherited
// pages take their hashes from there.
Result<Index> decode(std::span<const std::byte> bytes, std::string_view what,
                     const Index* parent = nullptr);

// One index per level of a chain, nearest first (absent where that generation lacks the process).
using LevelBytes = std::vector<std::optional<std::vector<std::byte>>>;
// Decodes `levels` oldest first, each with the one below as its parent (an absent level is an
// empty index); `what(level)` names a level in errors. Returns every level's whole index, nearest
// first, or with `newest_only` just levels[0]'s (the others are freed as it goes).
Result<std::vector<Index>> decode_levels(LevelBytes& levels,
                                         const std::function<std::string(size_t)>& what,
                                         bool newest_only);

// The parent an incremental dump builds on: its page indexes by section prefix.
struct Parent {
  image::GenerationInfo gen;
  std::map<std::string, Index> indexes;  // section prefix ("" for the root) -> index
  std::map<std::string, size_t> deltas;  // section prefix -> delta indexes read to make it
  // Whether the next index of process `prefix` is written whole (kMaxDeltas).
  bool next_whole(const std::string& prefix) const;
};

// The newest generation of `store` that an incremental dump of `pid` (running `exe`) can build
// on: a process image of that pid and program, with page indexes, whose chain links and files
// check (the data checksums are read by restore and verify, not here: that would read the whole
// chain at every checkpoint). Nullopt, with the reason in *why, when there is none.
std::optional<Parent> find_parent(const image::Store& store, pid_t pid, const std::string& exe,
                                  std::string* why);

// Tree-wide state of one dump: the parent (if incremental) and what was written.
struct DumpState {
  std::optional<Parent> parent;
  uint64_t pages = 0;    // pages saved (stored or inherited)
  uint64_t changed = 0;  // pages stored in this generation
  uint64_t unread = 0;   // inherited without being read: unchanged by write tracking
  uint64_t held = 0;     // bytes of written pages read while stopped (memory::hold_changed)
  // Backed before the freeze for those, as much as the parent held (dump.cpp, ParentLookup).
  std::unique_ptr<BackedArena> held_room;
};

// Streams one process's pages into its pages section, leaving out those its parent has, and
// builds its index. Pages come in ascending address order.
class PageSink {
 public:
  PageSink(image::SectionWriter& out, const Index* parent, DumpState& state)
      : out_(out), parent_(parent), state_(state) {}
  // No write outlives the sink: the memory its bytes came from goes with it.
  ~PageSink() { (void)settle_all(); }
  PageSink(const PageSink&) = delete;
  PageSink& operator=(const PageSink&) = delete;
  // `bytes` are whole pages starting at `addr`.
  Status write(uint64_t addr, std::span<const char> bytes);
  // write() that may leave `bytes` to be written after it returns: they stay unchanged until
  // settle() of the returned ticket (image::SectionWriter::write_behind).
  Result<uint64_t> write_behind(uint64_t addr, std::span<const char> bytes);
  Status settle(uint64_t ticket);
  // Waits for every write so far; call it before finishing the section (which ends `out`).
  Status settle_all();
  // Takes the parent's entries for the pages of [addr, end), known unchanged without reading
  // them. Returns where it stopped: `end`, or the first page the parent does not have, which
  // the caller must read and write().
  Result<uint64_t> inherit(uint64_t addr, uint64_t end);
  // Room for `pages` entries, backed at once (common/populate.hpp).
  void reserve(uint64_t pages);
  Index take() { return std::move(index_); }

 private:
  // The parent's entry for `addr`; addresses come in ascending order, so a cursor walks it.
  const Entry* parent_entry(uint64_t addr);
  Status check_order(uint64_t addr) const;
  Result<uint64_t> put(uint64_t addr, std::span<const char> bytes, bool behind);
  // put() of pages that are all stored, hashed on the write-behind thread.
  Result<uint64_t> put_all_behind(uint64_t addr, std::span<const char> bytes);
  // Room for `n` more entries without moving them under a queued write.
  Status make_room(size_t n);

  image::SectionWriter& out_;
  const Index* parent_;
  size_t cursor_ = 0;
  uint64_t last_ticket_ = 0;
  DumpState& state_;
  Index index_;
};

}  // namespace ckpt::page_index
