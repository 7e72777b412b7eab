#include "resources/page_chain.hpp"

#include <algorithm>
#include <future>
#include <memory>
#include <optional>

#include "common/phase_clock.hpp"
#include "common/populate.hpp"
#include "image/chain.hpp"
#include "resources/memory.hpp"
#include "resources/page_index.hpp"
#include "resources/page_populate.hpp"

namespace ckpt::page_chain {
namespace {

using page_index::Index;
using page_index::kPage;

constexpr size_t kBuffer = 1 << 20;

Result<std::vector<std::byte>> load_bytes(const image::GenerationInfo& gen,
                                          const std::string& name) {
  CKPT_TRY_ASSIGN(auto reader, image::open_generation_section(gen, name));
  constexpr size_t kStep = 64 << 10;
  std::vector<std::byte> bytes;
  if (const image::SectionMeta* meta = gen.find_section(name))
    reserve_populated(bytes, meta->raw_size + kStep);  // the last step finds the end
  for (;;) {                                           // straight into `bytes`, a step at a time
    size_t at = bytes.size();
    bytes.resize(at + kStep);
    CKPT_TRY_ASSIGN(size_t n, reader->read(std::span(bytes).subspan(at)));
    bytes.resize(at + n);
    if (n == 0) break;
  }
  return bytes;
}

std::string index_what(const image::GenerationInfo& gen, const std::string& name) {
  return fmt::format("gen {}: section '{}'", gen.id, name);
}

// The index must list exactly the pages the process record says are saved, in order.
Status check_matches(const RestoreContext& ctx, const Index& index) {
  size_t i = 0;
  for (auto& v : ctx.rec->memory.vmas) {
    for (auto& r : v.pages) {
      for (uint64_t a = r.start; a < r.end; a += kPage, ++i) {
        if (i >= index.entries.size() || index.entries[i].addr() != a)
          return errorf(
              "restore pid {}: the page index of gen {} does not match its mappings at "
              "{:#x}",
              ctx.pid, ctx.generation.id, a);
      }
    }
  }
  if (i != index.entries.size())
    return errorf("restore pid {}: the page index of gen {} lists {} pages, its mappings {}",
                  ctx.pid, ctx.generation.id, index.entries.size(), i);
  return {};
}

// Writes the wanted pages among the `count` pages in `buf`, which begin at ordinal `first`, once
// the populate has got past them; `next` walks `wanted`. Neighbouring pages go in one run.
Status write_wanted(RestoreContext& ctx, const Wanted& wanted, size_t& next, uint64_t first,
                    uint64_t count, const std::byte* buf, memory::Populated& ready) {
  // A generation's pages are scattered among its parent's: one call for many runs.
  thread_local std::vector<iovec> local, remote;
  local.clear();
  remote.clear();
  uint64_t bytes = 0;
  while (next < wanted.size() && wanted[next].first < first + count) {
    size_t end = next + 1;
    while (end < wanted.size() && wanted[end].first < first + count &&
           wanted[end].first == wanted[end - 1].first + 1 &&
           wanted[end].second == wanted[end - 1].second + kPage)
      ++end;
    size_t len = (end - next) * kPage;
    local.push_back({const_cast<std::byte*>(buf + (wanted[next].first - first) * kPage), len});
    remote.push_back({reinterpret_cast<void*>(wanted[next].second), len});
    bytes += len;
    next = end;
  }
  if (remote.empty()) return {};
  auto* last = static_cast<const std::byte*>(remote.back().iov_base);
  CKPT_TRY(ready.until(reinterpret_cast<uint64_t>(last) + remote.back().iov_len));
  CKPT_TRY(write_remote_runs(ctx.pid, local, remote));
  ctx.progress->advance(bytes);
  return {};
}

// Reads one generation's pages section from start to end (its checksum is checked at the end)
// and writes the wanted pages.
Status copy_level(RestoreContext& ctx, const image::GenerationInfo& gen, const std::string& name,
                  const Wanted& wanted, memory::Populated& ready) {
  CKPT_TRY_ASSIGN(auto reader, image::open_generation_section(gen, name));
  // One buffer for every level and process: a fresh one is slow to touch the first time.
  thread_local const std::unique_ptr<std::byte[]> storage(new std::byte[kBuffer]);
  uint64_t ordinal = 0;
  size_t next = 0;
  for (;;) {
    size_t got = 0;
    while (got < kBuffer) {
      CKPT_TRY_ASSIGN(size_t n, reader->read({storage.get() + got, kBuffer - got}));
      if (n == 0) break;
      got += n;
    }
    if (got % kPage != 0)
      return errorf("restore pid {}: gen {}: section '{}' is not whole pages", ctx.pid, gen.id,
                    name);
    CKPT_TRY(write_wanted(ctx, wanted, next, ordinal, got / kPage, storage.get(), ready));
    ordinal += got / kPage;
    if (got < kBuffer) break;
  }
  if (next != wanted.size())
    return errorf("restore pid {}: gen {}: section '{}' ends at page {}, before page {}", ctx.pid,
                  gen.id, name, ordinal, wanted[next].first);
  return {};
}

}  // namespace

Result<std::vector<Wanted>> compose(const std::vector<Index>& chain,
                                    const std::vector<std::string>& ids) {
  std::vector<Wanted> wanted(chain.size());
  std::vector<uint64_t> pending;  // addresses inherited from further up, ascending
  uint64_t stored = chain.at(0).stored_count();
  reserve_populated(wanted[0], stored);
  reserve_populated(pending, chain[0].entries.size() - stored);
  uint64_t k = 0;
  for (auto& e : chain.at(0).entries) {
    if (e.stored()) wanted[0].emplace_back(k++, e.addr());
    if (!e.stored()) pending.push_back(e.addr());
  }
  for (size_t level = 1; level < chain.size() && !pending.empty(); ++level) {
    const Index& idx = chain[level];
    // Both lists ascend: one walk finds each pending page's entry and the ordinal of its page
    // in the level's section (the stored entries before it). Run twice: to count, then to fill.
    auto walk = [&](auto&& take) -> Status {
      size_t j = 0;
      uint64_t ordinal = 0;
      for (uint64_t a : pending) {
        for (; j < idx.entries.size() && idx.entries[j].addr() < a; ++j)
          ordinal += idx.entries[j].stored() ? 1 : 0;
        if (j == idx.entries.size() || idx.entries[j].addr() != a)
          return errorf("page {:#x} is inherited from gen {}, which does not hold it", a,
                        ids.at(level));
        take(idx.entries[j].stored(), ordinal, a);
      }
      return {};
    };
    size_t here = 0;
    CKPT_TRY(walk([&](bool stored, uint64_t, uint64_t) { here += stored ? 1 : 0; }));
    std::vector<uint64_t> still;
    reserve_populated(still, pending.size() - here);
    reserve_populated(wanted[level], here);
    CKPT_TRY(walk([&](bool stored, uint64_t ordinal, uint64_t a) {
      if (stored) wanted[level].emplace_back(ordinal, a);
      if (!stored) still.push_back(a);
    }));
    pending.swap(still);
  }
  if (!pending.empty())
    return errorf("page {:#x} is inherited, but no generation below {} stores it", pending.front(),
                  ids.at(0));
  return wanted;
}

namespace {

struct Chain {
  std::vector<image::GenerationInfo> gens;
  std::vector<Index> indexes;
  std::vector<std::string> ids;
};

// Every level's whole index, read nearest first and decoded oldest first: a delta index needs
// its parent's.
Result<Chain> load_indexes(const RestoreContext& ctx) {
  Chain c;
  CKPT_TRY_ASSIGN(c.gens, image::load_chain(ctx.generation));
  std::string index_name = ctx.section(page_index::kIndexSection);
  page_index::LevelBytes read;
  for (auto& gen : c.gens) {
    c.ids.push_back(gen.id);
    // A process that an ancestor did not have (a child forked since) inherits nothing from it;
    // compose() names the generation if a page is missing after all.
    if (!read.empty() && !gen.find_section(index_name)) {
      read.emplace_back();
      continue;
    }
    CKPT_TRY_ASSIGN(auto bytes, load_bytes(gen, index_name));
    read.emplace_back(std::move(bytes));
  }
  auto what = [&](size_t level) { return index_what(c.gens[level], index_name); };
  CKPT_TRY_ASSIGN(c.indexes, page_index::decode_levels(read, what, false));
  CKPT_TRY(check_matches(ctx, c.indexes.at(0)));
  return c;
}

Result<std::vector<Wanted>> compose_for(const RestoreContext& ctx, const Chain& c) {
  auto wanted = compose(c.indexes, c.ids);
  if (!wanted.ok()) return wanted.error().wrap(fmt::format("restore pid {}", ctx.pid));
  return wanted;
}

struct Planned {
  Chain chain;
  std::vector<Wanted> wanted;
};

Result<Planned> plan(const RestoreContext& ctx) {
  CKPT_TRY_ASSIGN(Chain c, load_indexes(ctx));
  CKPT_TRY_ASSIGN(auto wanted, compose_for(ctx, c));
  return Planned{std::move(c), std::move(wanted)};
}

}  // namespace

Status fill(RestoreContext& ctx, std::vector<ptrace::BatchCall>& populates) {
  PhaseClock clock("restore", fmt::format("pid {}: chain", ctx.pid));
  auto planning = std::async(std::launch::async, [&ctx] { return plan(ctx); });
  // The copy waits for the plan; the future joins it on any return.
  return memory::populate_while(ctx, populates, true, [&](memory::Populated& ready) -> Status {
    Result<Planned> planned = planning.get();
    if (!planned.ok()) return planned.error();
    auto& [c, wanted] = *planned;
    clock.mark(fmt::format("{} page indexes composed", c.gens.size()));
    std::string pages_name = ctx.section(memory::kPagesSection);
    for (size_t level = c.gens.size(); level-- > 0;) {
      // Ancestors that give nothing are not read; the restored generation always is (checksum).
      if (wanted[level].empty() && level != 0) continue;
      Status st = copy_level(ctx, c.gens[level], pages_name, wanted[level], ready);
      if (!st.ok())
        return level == 0 ? st : st.error().wrap(fmt::format("parent gen {}", c.gens[level].id));
      clock.mark(fmt::format("gen {}: {} pages", c.gens[level].id, wanted[level].size()));
    }
    return {};
  });
}

Result<std::optional<PageLocations>> locate(const RestoreContext& ctx, std::string* why) {
  if (!ctx.generation.find_section(ctx.section(page_index::kIndexSection))) {
    *why = "the image has no page index";
    return std::optional<PageLocations>();
  }
  CKPT_TRY_ASSIGN(Chain c, load_indexes(ctx));
  CKPT_TRY_ASSIGN(auto wanted, compose_for(ctx, c));
  std::string pages_name = ctx.section(memory::kPagesSection);
  PageLocations out;
  const Index& own = c.indexes.at(0);
  reserve_populated(out.pages, own.entries.size());
  for (size_t level = 0; level < c.gens.size(); ++level) {
    if (wanted[level].empty()) continue;
    const image::SectionMeta* meta = c.gens[level].find_section(pages_name);
    if (!meta)
      return errorf("restore pid {}: gen {} has no section '{}'", ctx.pid, c.ids[level],
                    pages_name);
    if (meta->compression != image::Compression::none) {
      *why = fmt::format("the pages of gen {} are compressed", c.ids[level]);
      return std::optional<PageLocations>();
    }
    auto file = static_cast<uint32_t>(out.files.size());
    out.files.push_back(c.gens[level].path / meta->file);
    for (auto [ordinal, addr] : wanted[level]) {
      if ((ordinal + 1) * kPage > meta->raw_size)
        return errorf("restore pid {}: gen {}: section '{}' ends before page {}", ctx.pid,
                      c.ids[level], pages_name, ordinal);
      out.pages.push_back({addr, meta->offset + ordinal * kPage, 0, file});
    }
  }
  auto by_addr = [](const PageLocation& a, const PageLocation& b) { return a.addr < b.addr; };
  // From one generation they are in order already (a big list: sorting it costs milliseconds).
  if (!std::is_sorted(out.pages.begin(), out.pages.end(), by_addr))
    std::sort(out.pages.begin(), out.pages.end(), by_addr);
  // compose() gives every page of the restored index once, so the two are in step.
  if (out.pages.size() != own.entries.size())
    return errorf("restore pid {}: the chain gives {} pages for an index of {}", ctx.pid,
                  out.pages.size(), own.entries.size());
  for (size_t i = 0; i < out.pages.size(); ++i) out.pages[i].hash = own.entries[i].hash;
  return std::optional<PageLocations>(std::move(out));
}

Status check_index(const RestoreContext& ctx) {
  std::string name = ctx.section(page_index::kIndexSection);
  if (!ctx.generation.find_section(name)) return {};  // written before page indexes existed
  CKPT_TRY_ASSIGN(auto bytes, load_bytes(ctx.generation, name));
  CKPT_TRY_ASSIGN(Index idx, page_index::decode(bytes, index_what(ctx.generation, name)));
  return check_matches(ctx, idx);
}

}  // namespace ckpt::page_chain
