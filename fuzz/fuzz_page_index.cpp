// Feeds arbitrary bytes to the page index decoder as a parent's index and a child's. The first
// input byte B says where the parent's bytes end (16 B + 8, so that a whole index of B - 1
// entries fits exactly); the child is decoded with the parent's whole index when that decodes.
// Whatever decodes must be an index restore can trust: addresses strictly ascending and
// page-aligned, an index of changes' inherited pages with the parent's hashes, and encoding it
// again decodes to the same. Its kept seeds (fuzz/corpus/fuzz_page_index) are written by hand: a
// whole index of 8 pages, alone, with an index of changes made on it, and with an older whole
// index that inherits; and a crash found here (an entry above user space that decoded but could
// not be written back as a run).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "resources/page_index.hpp"

namespace {

using namespace ckpt;
using page_index::Index;

void check(const Index& idx, const Index* changes_of) {
  for (size_t i = 0; i < idx.entries.size(); ++i) {
    if (idx.entries[i].addr() % page_index::kPage != 0) __builtin_trap();
    if (i > 0 && idx.entries[i].addr() <= idx.entries[i - 1].addr()) __builtin_trap();
    if (changes_of && !idx.entries[i].stored()) {
      const page_index::Entry* was = changes_of->find(idx.entries[i].addr());
      if (!was || was->hash != idx.entries[i].hash) __builtin_trap();
    }
  }
  // Encoded again it may be an index of changes: its inherited pages are its own entries.
  auto again = page_index::decode(page_index::encode(idx), "again", &idx);
  if (!again.ok() || again->entries.size() != idx.entries.size()) __builtin_trap();
  for (size_t i = 0; i < idx.entries.size(); ++i)
    if (again->entries[i].key != idx.entries[i].key ||
        again->entries[i].hash != idx.entries[i].hash)
      __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto rest = std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  size_t split = std::min<size_t>(size_t{data[0]} * 16 + 8, rest.size());
  auto parent = page_index::decode(rest.first(split), "parent");
  const Index* p = parent.ok() ? &*parent : nullptr;
  if (p) check(*p, nullptr);
  auto bytes = rest.subspan(split);
  auto child = page_index::decode(bytes, "child", p);
  bool changes = page_index::format_of(bytes) == page_index::kDeltaFormat;
  if (child.ok()) check(*child, changes ? p : nullptr);
  return 0;
}
