#include "app/rollback_maps.hpp"

#include <algorithm>

#include "proc/stat.hpp"

namespace ckpt::rollback {
namespace {

bool is_anon_like(const proc::MapEntry& m) {
  return m.kind == proc::MapKind::anonymous || m.kind == proc::MapKind::heap ||
         m.kind == proc::MapKind::stack || m.kind == proc::MapKind::anon_named;
}

// The mapping covering [addr, ...) in a sorted list, or null; `hint` walks forward.
const proc::MapEntry* covering(const std::vector<proc::MapEntry>& maps, size_t& hint,
                               uint64_t addr) {
  while (hint < maps.size() && maps[hint].end <= addr) ++hint;
  if (hint < maps.size() && maps[hint].start <= addr) return &maps[hint];
  return nullptr;
}

void add_remap(MapPlan& plan, uint64_t s, uint64_t e, const proc::MapEntry& from) {
  if (!plan.remap.empty()) {
    Remap& last = plan.remap.back();
    if (last.end == s && last.from.start == from.start && last.from.end == from.end) {
      last.end = e;
      return;
    }
  }
  plan.remap.push_back({s, e, from});
}

void add_protect(MapPlan& plan, uint64_t s, uint64_t e, int prot) {
  if (!plan.protect.empty() && plan.protect.back().end == s && plan.protect.back().prot == prot) {
    plan.protect.back().end = e;
    return;
  }
  plan.protect.push_back({s, e, prot});
}

}  // namespace

Result<uint64_t> heap_end(pid_t pid, const std::vector<proc::MapEntry>& maps) {
  for (auto& m : maps)
    if (m.kind == proc::MapKind::heap) return m.end;
  CKPT_TRY_ASSIGN(auto st, proc::read_stat(pid));
  return st.start_brk;
}

bool same_mapping(const proc::MapEntry& a, const proc::MapEntry& b, uint64_t addr) {
  if (a.shared != b.shared) return false;
  if (is_anon_like(a) && is_anon_like(b)) {
    // Private anonymous memory has no identity to compare: a mapping replaced by another at
    // the same place reads as written everywhere, so its pages are all restored anyway.
    return !a.shared ||
           (a.dev_major == b.dev_major && a.dev_minor == b.dev_minor && a.inode == b.inode);
  }
  if (is_anon_like(a) || is_anon_like(b)) return false;
  return a.dev_major == b.dev_major && a.dev_minor == b.dev_minor && a.inode == b.inode &&
         a.offset + (addr - a.start) == b.offset + (addr - b.start);
}

MapPlan plan_mappings(const std::vector<proc::MapEntry>& then,
                      const std::vector<proc::MapEntry>& now) {
  std::vector<uint64_t> cuts;
  for (auto* list : {&then, &now}) {
    for (auto& m : *list) {
      cuts.push_back(m.start);
      cuts.push_back(m.end);
    }
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  MapPlan plan;
  size_t hint_then = 0, hint_now = 0;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    uint64_t s = cuts[i], e = cuts[i + 1];
    const proc::MapEntry* a = covering(then, hint_then, s);
    const proc::MapEntry* b = covering(now, hint_now, s);
    if (!a && !b) continue;
    if ((a && proc::is_kernel_mapping(a->kind)) || (b && proc::is_kernel_mapping(b->kind)))
      continue;
    if (a && b && same_mapping(*a, *b, s)) {
      if (a->prot != b->prot) add_protect(plan, s, e, a->prot);
      if (!a->shared) proc::append_range(plan.same_private, s, e);
      continue;
    }
    if (b) proc::append_range(plan.unmap, s, e);
    if (a) add_remap(plan, s, e, *a);
  }
  return plan;
}

}  // namespace ckpt::rollback
