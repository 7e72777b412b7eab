#pragma once
// Incremental generations (docs/image-format.md, "Incremental generations"): a generation may
// hold only the pages that changed since its parent and name the parent by id and by the digest
// of the parent's page indexes. A chain is a generation followed by its parent, grandparent, ...
// down to a full generation.
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "image/store.hpp"

namespace ckpt::image {

inline constexpr std::string_view kParentLabel = "parent";
inline constexpr std::string_view kParentIndexLabel = "parent_index";
// Sections whose name ends with this are page indexes (resources/page_index.hpp).
inline constexpr std::string_view kPageIndexSuffix = "memory.index";
// A longer chain is damage (or a loop), not a store ckpt wrote.
inline constexpr size_t kMaxChain = 4096;

bool is_incremental(const GenerationInfo& gen);
// Only a generation with page indexes can be a parent (older ones have none).
bool has_page_index(const GenerationInfo& gen);
// XXH3-64 of the checksums (8 bytes little-endian each) of every page index section of `gen`, in
// manifest order: what a child records in kParentIndexLabel, as 16 hex digits.
uint64_t page_index_digest(const GenerationInfo& gen);

// `gen` and its ancestors, nearest first. Checks every link: the parent id is a generation id
// older than the child's, it is a sibling directory whose manifest reads, and its page index
// digest is the one the child recorded. Errors name the child and the parent.
Result<std::vector<GenerationInfo>> load_chain(const GenerationInfo& gen);

// load_chain, then `check` on every member, newest first; a parent's failure says so.
Status check_chain(const GenerationInfo& gen,
                   const std::function<Status(const GenerationInfo&)>& check);

// `check` on every member of a loaded chain, newest first.
Status check_chain(const std::vector<GenerationInfo>& chain,
                   const std::function<Status(const GenerationInfo&)>& check);

// load_chain, then the file sizes and data headers of every member (cheap).
Status check_chain_files(const GenerationInfo& gen);
Status check_chain_files(const std::vector<GenerationInfo>& chain);

}  // namespace ckpt::image
