#include "image/chain.hpp"

#include <cstring>

#include "common/checksum.hpp"
#include "image/format.hpp"

namespace ckpt::image {

bool is_incremental(const GenerationInfo& gen) {
  return gen.labels.count(std::string(kParentLabel)) != 0;
}

bool has_page_index(const GenerationInfo& gen) {
  for (auto& s : gen.sections)
    if (std::string_view(s.name).ends_with(kPageIndexSuffix)) return true;
  return false;
}

uint64_t page_index_digest(const GenerationInfo& gen) {
  Checksum64 sum;
  for (auto& s : gen.sections) {
    if (!std::string_view(s.name).ends_with(kPageIndexSuffix)) continue;
    std::byte le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<std::byte>(s.checksum >> (8 * i));
    sum.update(le);
  }
  return sum.digest();
}

namespace {

// The parent of `child`, its link checked.
Result<GenerationInfo> load_parent(const GenerationInfo& child) {
  const std::string& id = child.labels.at(std::string(kParentLabel));
  // Also keeps the id a plain name: no path leads outside the store.
  if (!format::parse_id(id) || id >= child.id)
    return errorf("gen {}: parent '{}' is not an older generation id", child.id, id);
  auto parent = read_generation(child.path.parent_path() / id, child.trust);
  if (!parent.ok())
    return errorf("gen {}: parent gen {} is missing or unreadable: {}", child.id, id,
                  parent.error().message);
  auto want = child.labels.find(std::string(kParentIndexLabel));
  std::string have = fmt::format("{:016x}", page_index_digest(*parent));
  if (!has_page_index(*parent) || want == child.labels.end() || want->second != have)
    return errorf("gen {}: parent gen {} is not the one it was made from (page index digest {})",
                  child.id, id, has_page_index(*parent) ? have : "absent");
  return parent;
}

}  // namespace

Result<std::vector<GenerationInfo>> load_chain(const GenerationInfo& gen) {
  std::vector<GenerationInfo> chain{gen};
  while (is_incremental(chain.back())) {
    if (chain.size() >= kMaxChain)
      return errorf("gen {}: chain of parents longer than {}", gen.id, kMaxChain);
    auto parent = load_parent(chain.back());
    if (!parent.ok()) {
      if (chain.size() == 1) return parent.error();
      return parent.error().wrap(fmt::format("gen {}", gen.id));
    }
    chain.push_back(std::move(*parent));
  }
  return chain;
}

Status check_chain(const std::vector<GenerationInfo>& chain,
                   const std::function<Status(const GenerationInfo&)>& check) {
  for (size_t i = 0; i < chain.size(); ++i) {
    Status st = check(chain[i]);
    if (!st.ok()) return i == 0 ? st : st.error().wrap(fmt::format("gen {}: parent", chain[0].id));
  }
  return {};
}

Status check_chain(const GenerationInfo& gen,
                   const std::function<Status(const GenerationInfo&)>& check) {
  CKPT_TRY_ASSIGN(auto chain, load_chain(gen));
  return check_chain(chain, check);
}

Status check_chain_files(const GenerationInfo& gen) {
  return check_chain(gen, verify_generation_files);
}

Status check_chain_files(const std::vector<GenerationInfo>& chain) {
  return check_chain(chain, verify_generation_files);
}

}  // namespace ckpt::image
