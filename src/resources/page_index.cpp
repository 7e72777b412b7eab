#include "resources/page_index.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
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

std::array<std::byte, kHeader> header_of(const Index& index) {
  std::array<std::byte, kHeader> h{};
  std::memcpy(h.data(), kMagic, 8);
  uint32_t format = kIndexFormat, page = kPage;
  std::memcpy(h.data() + 8, &format, 4);
  std::memcpy(h.data() + 12, &page, 4);
  put64(h.data() + 16, index.entries.size());
  return h;
}

std::span<const std::byte> bytes_of(const Index& index) {
  return std::as_bytes(std::span(index.entries));
}

}  // namespace

std::vector<std::byte> encode(const Index& index) {
  auto header = header_of(index);
  auto entries = bytes_of(index);
  std::vector<std::byte> out;
  reserve_populated(out, header.size() + entries.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), entries.begin(), entries.end());
  return out;
}

Status write(image::GenerationWriter& out, std::string_view name, const Index& index) {
  CKPT_TRY_ASSIGN(image::SectionWriter * section, out.begin_section(name));
  auto header = header_of(index);
  CKPT_TRY(section->write(header));
  CKPT_TRY(section->write(bytes_of(index)));
  return section->finish();
}

Result<Index> decode(std::span<const std::byte> bytes, std::string_view what) {
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, 8) != 0)
    return errorf("{}: not a page index", what);
  if (uint32_t f = get32(bytes.data() + 8); f != kIndexFormat)
    return errorf("{}: page index format {} is not supported (this ckpt reads {})", what, f,
                  kIndexFormat);
  if (uint32_t page = get32(bytes.data() + 12); page != kPage)
    return errorf("{}: page size {} is not supported", what, page);
  uint64_t count = get64(bytes.data() + 16);
  if (count > (bytes.size() - kHeader) / kEntrySize || bytes.size() != kHeader + count * kEntrySize)
    return errorf("{}: {} bytes do not hold {} entries", what, bytes.size(), count);
  Index index;
  reserve_populated(index.entries, count);
  index.entries.resize(count);
  std::memcpy(index.entries.data(), bytes.data() + kHeader, count * kEntrySize);
  uint64_t last = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const Entry& e = index.entries[i];
    if ((e.key & (kPage - 1) & ~kStoredBit) != 0)
      return errorf("{}: entry {} has unknown flags {:#x}", what, i, e.key & (kPage - 1));
    if (i > 0 && e.addr() <= last)
      return errorf("{}: entry {} ({:#x}) is not above the one before", what, i, e.addr());
    last = e.addr();
  }
  return index;
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

Result<Parent> load_parent(const image::Store& store, const image::GenerationInfo& gen) {
  PhaseClock clock("dump", "incremental parent");
  CKPT_TRY(image::check_chain_files(gen));
  clock.mark("chain files");
  Parent p{gen, {}};
  for (auto& s : gen.sections) {
    std::string_view name = s.name;
    if (!name.ends_with(image::kPageIndexSuffix)) continue;
    std::string prefix(name.substr(0, name.size() - image::kPageIndexSuffix.size()));
    CKPT_TRY_ASSIGN(auto bytes, store.read_section(gen, s.name));
    clock.mark("read");
    CKPT_TRY_ASSIGN(p.indexes[prefix], decode(bytes, fmt::format("gen {}: {}", gen.id, s.name)));
    clock.mark("decoded");
  }
  return p;
}

}  // namespace

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
