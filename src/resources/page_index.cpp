#include "resources/page_index.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <optional>
#include <utility>

#include "common/checksum.hpp"
#include "common/log.hpp"
#include "common/phase_clock.hpp"
#include "common/populate.hpp"
#include "image/chain.hpp"

namespace ckpt::page_index {
namespace {

static_assert(std::endian::native == std::endian::little, "the index is stored little-endian");

constexpr char kMagic[8] = {'C', 'K', 'P', 'T', 'P', 'I', 'X', '\0'};
constexpr size_t kHeader = 24;  // magic, u32 format, u32 page size, u64 count
constexpr size_t kEntrySize = 16;
// The low bits of a page address are free: bit 0 says "stored here".
constexpr uint64_t kStoredBit = 1;
// No user-space page lies at or above this (x86-64 with 5-level paging: 56 bits). An index
// claiming one is damaged, and its runs' ends could not be written back without overflowing.
constexpr uint64_t kAddressLimit = uint64_t{1} << 56;

void put64(std::byte* p, uint64_t v) {
  std::memcpy(p, &v, 8);
}
uint64_t get64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t get32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

size_t Index::first_at_or_above(uint64_t addr, size_t from) const {
  auto it = std::lower_bound(entries.begin() + static_cast<std::ptrdiff_t>(from), entries.end(),
                             addr, [](const Entry& e, uint64_t a) { return e.addr() < a; });
  return static_cast<size_t>(it - entries.begin());
}

const Entry* Index::find(uint64_t addr) const {
  size_t k = first_at_or_above(addr);
  return k < entries.size() && entries[k].addr() == addr ? &entries[k] : nullptr;
}

uint64_t Index::stored_count() const {
  return static_cast<uint64_t>(
      std::count_if(entries.begin(), entries.end(), [](const Entry& e) { return e.stored(); }));
}

namespace {

// The delta encoding: its header, the stored entries, then the runs of inherited pages.
constexpr size_t kDeltaHeader = 40;  // magic, u32 format, u32 page size, u64 count, stored, runs

struct Run {  // inherited pages [start, start + pages * kPage)
  uint64_t start = 0;
  uint64_t pages = 0;
};
static_assert(sizeof(Run) == 16);

struct Delta {
  std::vector<Entry> stored;
  std::vector<Run> runs;
};

Delta delta_of(const Index& index) {
  Delta d;
  for (const Entry& e : index.entries) {
    if (e.stored()) {
      d.stored.push_back(e);
    } else if (!d.runs.empty() && d.runs.back().start + d.runs.back().pages * kPage == e.addr()) {
      ++d.runs.back().pages;
    } else {
      d.runs.push_back({e.addr(), 1});
    }
  }
  return d;
}

std::vector<std::byte> header_of(uint32_t format, const Index& index, const Delta* d) {
  std::vector<std::byte> h(d ? kDeltaHeader : kHeader);
  std::memcpy(h.data(), kMagic, 8);
  uint32_t page = kPage;
  std::memcpy(h.data() + 8, &format, 4);
  std::memcpy(h.data() + 12, &page, 4);
  put64(h.data() + 16, index.entries.size());
  if (d) {
    put64(h.data() + 24, d->stored.size());
    put64(h.data() + 32, d->runs.size());
  }
  return h;
}

bool all_stored(const Index& index) {
  return std::all_of(index.entries.begin(), index.entries.end(),
                     [](const Entry& e) { return e.stored(); });
}

// The encoding's parts in order, to be written one after the other.
struct Encoded {
  std::optional<Delta> delta;
  std::vector<std::byte> header;
  std::vector<std::span<const std::byte>> parts;
};

// Not movable: `parts` point into `delta`.
void encode_into(const Index& index, Encoded& out, bool whole = false) {
  if (whole || all_stored(index)) {
    out.header = header_of(kFullFormat, index, nullptr);
    out.parts = {out.header, std::as_bytes(std::span(index.entries))};
    return;
  }
  out.delta = delta_of(index);
  out.header = header_of(kDeltaFormat, index, &*out.delta);
  out.parts = {out.header, std::as_bytes(std::span(out.delta->stored)),
               std::as_bytes(std::span(out.delta->runs))};
}

Status check_entry(const Entry& e, uint64_t i, std::string_view what) {
  if ((e.key & (kPage - 1) & ~kStoredBit) != 0)
    return errorf("{}: entry {} has unknown flags {:#x}", what, i, e.key & (kPage - 1));
  if (e.addr() >= kAddressLimit)
    return errorf("{}: entry {} ({:#x}) is above user space", what, i, e.addr());
  return {};
}

Result<Index> decode_full(std::span<const std::byte> bytes, std::string_view what) {
  uint64_t count = get64(bytes.data() + 16);
  if (count > (bytes.size() - kHeader) / kEntrySize || bytes.size() != kHeader + count * kEntrySize)
    return errorf("{}: {} bytes do not hold {} entries", what, bytes.size(), count);
  Index index;
  reserve_populated(index.entries, count);
  index.entries.resize(count);
  // An empty vector's data() may be null, which memcpy must not get even for 0 bytes.
  if (count > 0) std::memcpy(index.entries.data(), bytes.data() + kHeader, count * kEntrySize);
  for (uint64_t i = 0; i < count; ++i) {
    const Entry& e = index.entries[i];
    CKPT_TRY(check_entry(e, i, what));
    if (i > 0 && e.addr() <= index.entries[i - 1].addr())
      return errorf("{}: entry {} ({:#x}) is not above the one before", what, i, e.addr());
  }
  return index;
}

// Reads the delta encoding's stored entries and runs, checking each list on its own.
Result<Delta> read_delta(std::span<const std::byte> bytes, std::string_view what, uint64_t& count) {
  if (bytes.size() < kDeltaHeader)
    return errorf("{}: {} bytes are no page index", what, bytes.size());
  count = get64(bytes.data() + 16);
  uint64_t stored = get64(bytes.data() + 24), runs = get64(bytes.data() + 32);
  uint64_t room = (bytes.size() - kDeltaHeader) / kEntrySize;
  if (stored > room || runs > room - stored ||
      bytes.size() != kDeltaHeader + (stored + runs) * kEntrySize)
    return errorf("{}: {} bytes do not hold {} entries and {} runs", what, bytes.size(), stored,
                  runs);
  Delta d;
  d.stored.resize(stored);
  d.runs.resize(runs);
  if (stored > 0) std::memcpy(d.stored.data(), bytes.data() + kDeltaHeader, stored * kEntrySize);
  if (runs > 0)
    std::memcpy(d.runs.data(), bytes.data() + kDeltaHeader + stored * kEntrySize, runs * 16);
  for (uint64_t i = 0; i < stored; ++i) {
    CKPT_TRY(check_entry(d.stored[i], i, what));
    if (!d.stored[i].stored()) return errorf("{}: entry {} is not marked stored", what, i);
    if (i > 0 && d.stored[i].addr() <= d.stored[i - 1].addr())
      return errorf("{}: entry {} ({:#x}) is not above the one before", what, i,
                    d.stored[i].addr());
  }
  if (stored > count) return errorf("{}: {} stored pages, but {} entries", what, stored, count);
  uint64_t total = stored, end = 0;
  for (uint64_t i = 0; i < runs; ++i) {
    const Run& r = d.runs[i];
    if (r.start % kPage != 0 || r.start >= kAddressLimit || r.pages == 0 ||
        r.pages > (kAddressLimit - r.start) / kPage || (i > 0 && r.start < end))
      return errorf("{}: run {} ({:#x}, {} pages) is not a run above the one before", what, i,
                    r.start, r.pages);
    if (r.pages > count - total)
      return errorf("{}: more stored and inherited pages than its {} entries", what, count);
    end = r.start + r.pages * kPage;
    total += r.pages;
  }
  if (total != count)
    return errorf("{}: {} stored and inherited pages, but {} entries", what, total, count);
  return d;
}

// The whole index: the stored entries and, between them, the inherited runs with the parent's
// hashes.
Result<Index> decode_delta(std::span<const std::byte> bytes, std::string_view what,
                           const Index* parent) {
  if (!parent) return errorf("{}: a page index of changes, read without its parent's", what);
  uint64_t count = 0;
  CKPT_TRY_ASSIGN(Delta d, read_delta(bytes, what, count));
  // Checked before any room is taken: a run is 16 bytes however many pages it claims.
  if (count - d.stored.size() > parent->entries.size())
    return errorf("{}: {} pages are inherited, but the parent holds {}", what,
                  count - d.stored.size(), parent->entries.size());
  Index index;
  reserve_populated(index.entries, count);
  const auto& from = parent->entries;
  size_t s = 0, cursor = 0;
  for (const Run& r : d.runs) {
    for (; s < d.stored.size() && d.stored[s].addr() < r.start; ++s)
      index.entries.push_back(d.stored[s]);
    uint64_t end = r.start + r.pages * kPage;
    if (s < d.stored.size() && d.stored[s].addr() < end)
      return errorf("{}: page {:#x} is both stored and inherited", what, d.stored[s].addr());
    cursor = parent->first_at_or_above(r.start, cursor);
    // Strictly ascending page addresses: equal ends mean the parent has every page between.
    size_t last = cursor + r.pages - 1;
    if (last >= from.size() || from[cursor].addr() != r.start || from[last].addr() != end - kPage)
      return errorf("{}: pages {:#x}-{:#x} are inherited, but the parent does not hold them all",
                    what, r.start, end);
    for (size_t k = cursor; k <= last; ++k)
      index.entries.emplace_back(from[k].addr(), from[k].hash, false);
    cursor = last + 1;
  }
  for (; s < d.stored.size(); ++s) index.entries.push_back(d.stored[s]);
  return index;
}

}  // namespace

std::vector<std::byte> encode(const Index& index) {
  Encoded e;
  encode_into(index, e);
  std::vector<std::byte> out;
  size_t size = 0;
  for (auto part : e.parts) size += part.size();
  reserve_populated(out, size);
  for (auto part : e.parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

Status write(image::GenerationWriter& out, std::string_view name, const Index& index, bool whole) {
  CKPT_TRY_ASSIGN(image::SectionWriter * section, out.begin_section(name));
  Encoded e;
  encode_into(index, e, whole);
  for (auto part : e.parts) CKPT_TRY(section->write(part));
  return section->finish();
}

uint32_t format_of(std::span<const std::byte> bytes) {
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, 8) != 0) return 0;
  return get32(bytes.data() + 8);
}

Result<Index> decode(std::span<const std::byte> bytes, std::string_view what, const Index* parent) {
  uint32_t format = format_of(bytes);
  if (format == 0) return errorf("{}: not a page index", what);
  if (format != kFullFormat && format != kDeltaFormat)
    return errorf("{}: page index format {} is not supported (this ckpt reads {} and {})", what,
                  format, kFullFormat, kDeltaFormat);
  if (uint32_t page = get32(bytes.data() + 12); page != kPage)
    return errorf("{}: page size {} is not supported", what, page);
  if (format == kFullFormat) return decode_full(bytes, what);
  return decode_delta(bytes, what, parent);
}

Result<std::vector<Index>> decode_levels(LevelBytes& levels,
                                         const std::function<std::string(size_t)>& what,
                                         bool newest_only) {
  std::vector<Index> decoded(newest_only ? 1 : levels.size());
  auto slot = [&](size_t level) -> Index& { return decoded[newest_only ? 0 : level]; };
  for (size_t level = levels.size(); level-- > 0;) {
    if (!levels[level]) {
      slot(level) = {};
      continue;
    }
    const Index* parent = level + 1 < levels.size() ? &slot(level + 1) : nullptr;
    CKPT_TRY_ASSIGN(Index idx, decode(*levels[level], what(level), parent));
    slot(level) = std::move(idx);
    levels[level].reset();
  }
  return decoded;
}

namespace {

bool same_program(const image::GenerationInfo& g, pid_t pid, const std::string& exe) {
  auto label = [&](const char* k) {
    auto it = g.labels.find(k);
    return it == g.labels.end() ? std::string() : it->second;
  };
  if (label("kind") != "process" || label("pid") != std::to_string(pid)) return false;
  return exe.empty() || label("exe").empty() || label("exe") == exe;
}

// The whole index `name` of chain[0]: a delta one is read with its parent's, down to the nearest
// full one (cheap but for that one: a delta index of 1 % of 1 GiB is 40 KiB).
Result<Index> load_whole(const image::Store& store, const std::vector<image::GenerationInfo>& chain,
                         const std::string& name, size_t& deltas) {
  LevelBytes read;
  deltas = 0;
  for (size_t level = 0; level < chain.size() && chain[level].find_section(name); ++level) {
    CKPT_TRY_ASSIGN(auto bytes, store.read_section(chain[level], name));
    bool delta = format_of(bytes) == kDeltaFormat;
    read.emplace_back(std::move(bytes));
    if (!delta) break;
    ++deltas;
  }
  auto what = [&](size_t level) { return fmt::format("gen {}: {}", chain[level].id, name); };
  CKPT_TRY_ASSIGN(auto decoded, decode_levels(read, what, true));
  return std::move(decoded.front());
}

Result<Parent> load_parent(const image::Store& store, const image::GenerationInfo& gen) {
  PhaseClock clock("dump", "incremental parent");
  CKPT_TRY_ASSIGN(auto chain, image::load_chain(gen));
  CKPT_TRY(image::check_chain_files(chain));
  clock.mark("chain files");
  Parent p{gen, {}, {}};
  for (auto& s : gen.sections) {
    std::string_view name = s.name;
    if (!name.ends_with(image::kPageIndexSuffix)) continue;
    std::string prefix(name.substr(0, name.size() - image::kPageIndexSuffix.size()));
    CKPT_TRY_ASSIGN(p.indexes[prefix], load_whole(store, chain, s.name, p.deltas[prefix]));
    clock.mark("read and decoded");
  }
  return p;
}

}  // namespace

bool Parent::next_whole(const std::string& prefix) const {
  auto it = deltas.find(prefix);
  return it != deltas.end() && it->second >= kMaxDeltas;
}

std::optional<Parent> find_parent(const image::Store& store, pid_t pid, const std::string& exe,
                                  std::string* why) {
  *why = fmt::format("no earlier generation of pid {} in the store", pid);
  PhaseClock clock("dump", "incremental parent");
  auto all = store.list();
  clock.mark("listed");
  for (auto& g : all) {
    if (!same_program(g, pid, exe)) continue;
    if (!image::has_page_index(g)) {
      *why = fmt::format("generation {} has no page index (written by an older ckpt)", g.id);
      continue;
    }
    auto p = load_parent(store, g);
    if (p.ok()) return std::move(*p);
    *why = p.error().message;
    log::warn("memory", "incremental: not building on {}: {}", g.id, p.error().message);
  }
  return std::nullopt;
}

const Entry* PageSink::parent_entry(uint64_t addr) {
  if (!parent_) return nullptr;
  const auto& all = parent_->entries;
  while (cursor_ < all.size() && all[cursor_].addr() < addr) ++cursor_;
  return cursor_ < all.size() && all[cursor_].addr() == addr ? &all[cursor_] : nullptr;
}

void PageSink::reserve(uint64_t pages) {
  reserve_populated(index_.entries, pages);
}

Status PageSink::check_order(uint64_t addr) const {
  if (!index_.entries.empty() && addr <= index_.entries.back().addr())
    return errorf("page index: page {:#x} comes after {:#x}", addr, index_.entries.back().addr());
  return {};
}

Status PageSink::write(uint64_t addr, std::span<const char> bytes) {
  CKPT_TRY(put(addr, bytes, false));
  return {};
}

Result<uint64_t> PageSink::write_behind(uint64_t addr, std::span<const char> bytes) {
  return put(addr, bytes, true);
}

Status PageSink::settle(uint64_t ticket) {
  return out_.settle(ticket);
}

Status PageSink::settle_all() {
  uint64_t last = std::exchange(last_ticket_, 0);
  return last ? out_.settle(last) : Status{};
}

Status PageSink::make_room(size_t n) {
  if (index_.entries.size() + n <= index_.entries.capacity()) return {};
  // Writes still queued may fill in hashes through pointers into the entries (put_all_behind):
  // they must not move before those are done.
  CKPT_TRY(settle_all());
  index_.entries.reserve(std::max(index_.entries.size() + n, 2 * index_.entries.capacity()));
  return {};
}

Result<uint64_t> PageSink::put_all_behind(uint64_t addr, std::span<const char> bytes) {
  CKPT_TRY(check_order(addr));
  size_t n = bytes.size() / kPage;
  CKPT_TRY(make_room(n));
  Entry* first = index_.entries.data() + index_.entries.size();
  for (size_t i = 0; i < n; ++i) index_.entries.emplace_back(addr + i * kPage, 0, true);
  state_.pages += n;
  state_.changed += n;
  std::span<const std::byte> data(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  CKPT_TRY_ASSIGN(last_ticket_, out_.write_behind(data, [first, data, n] {
    for (size_t i = 0; i < n; ++i) first[i].hash = page_hash(data.data() + i * kPage, kPage);
  }));
  return last_ticket_;
}

Result<uint64_t> PageSink::put(uint64_t addr, std::span<const char> bytes, bool behind) {
  // Without a parent every page is stored: the copying thread need not wait for the hashes.
  if (behind && !parent_ && !bytes.empty()) return put_all_behind(addr, bytes);
  CKPT_TRY(make_room(bytes.size() / kPage));
  const char* run = nullptr;  // start of the changed pages not written yet
  uint64_t ticket = 0;
  auto flush = [&](const char* end) -> Status {
    if (!run) return {};
    std::span<const std::byte> data(reinterpret_cast<const std::byte*>(run), size_t(end - run));
    run = nullptr;
    if (!behind) return out_.write(data);
    CKPT_TRY_ASSIGN(ticket, out_.write_behind(data));
    last_ticket_ = ticket;
    return {};
  };
  for (size_t off = 0; off < bytes.size(); off += kPage, addr += kPage) {
    const char* page = bytes.data() + off;
    uint64_t hash = page_hash(page, kPage);
    const Entry* old = parent_entry(addr);
    bool changed = !old || old->hash != hash;
    CKPT_TRY(check_order(addr));
    index_.entries.emplace_back(addr, hash, changed);
    ++state_.pages;
    if (changed) {
      ++state_.changed;
      if (!run) run = page;
    } else {
      CKPT_TRY(flush(page));
    }
  }
  CKPT_TRY(flush(bytes.data() + bytes.size()));
  return ticket;
}

Result<uint64_t> PageSink::inherit(uint64_t addr, uint64_t end) {
  if (addr >= end) return end;
  CKPT_TRY(check_order(addr));
  const Entry* first = parent_entry(addr);
  if (!first) return addr;
  // Ascending page addresses: when the entry n-1 further on is the run's last page, the parent
  // has every page of the run, entries first[0..n).
  const auto& all = parent_->entries;
  uint64_t n = (end - addr) / kPage;
  size_t last = cursor_ + n - 1;
  if (last >= all.size() || all[last].addr() != end - kPage) {
    for (n = 1; cursor_ + n < all.size() && all[cursor_ + n].addr() == addr + n * kPage;) ++n;
    n = std::min(n, (end - addr) / kPage);
  }
  for (uint64_t i = 0; i < n; ++i)
    index_.entries.emplace_back(first[i].addr(), first[i].hash, false);
  state_.pages += n;
  state_.unread += n;
  return addr + n * kPage;
}

}  // namespace ckpt::page_index
