#pragma once
// Restoring the pages of an incremental generation (resources/page_index.hpp): each page comes
// from the generation of the chain that stores it (the nearest one at or above the restored
// generation whose index marks it stored).
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ptrace/remote_syscalls.hpp"
#include "resources/context.hpp"
#include "resources/page_index.hpp"

namespace ckpt::page_chain {

// What one generation of a chain gives: (ordinal among its stored pages, address), ascending.
using Wanted = std::vector<std::pair<uint64_t, uint64_t>>;

// Which pages each generation of a chain gives, from their page indexes (the restored
// generation's first, then its parent's, ...; `ids` name them in errors). Every page of the
// first index comes from exactly one generation: the nearest that stores it.
Result<std::vector<Wanted>> compose(const std::vector<page_index::Index>& chain,
                                    const std::vector<std::string>& ids);

// Writes every saved page of ctx's process into the puppet (its mappings exist already), reading
// each generation's pages section of the chain once, start to end, so that its checksum is
// checked. Errors name the generation at fault. The `populates` of the mappings run while
// another thread reads the chain's page indexes and, for big images, while the pages are
// copied (memory::populate_while).
Status fill(RestoreContext& ctx, std::vector<ptrace::BatchCall>& populates);

// Where one saved page lies in the store, for readers that take pages out of order.
struct PageLocation {
  uint64_t addr = 0;
  uint64_t offset = 0;  // in the data file
  uint64_t hash = 0;    // XXH3-64 of the page, from the restored generation's index
  uint32_t file = 0;    // into PageLocations::files
};

struct PageLocations {
  std::vector<std::filesystem::path> files;  // data files holding the pages
  std::vector<PageLocation> pages;           // ascending addresses
};

// Where every saved page of ctx's process lies, over the whole chain; nullopt (the reason in
// *why) when the pages cannot be read out of order: no page index (an image older than
// indexes) or a compressed pages section. The index is checked against the mappings.
Result<std::optional<PageLocations>> locate(const RestoreContext& ctx, std::string* why);

// Reads and checks the page index of ctx's process in a full generation (which restores without
// it): a damaged index makes the generation damaged, whatever part is used.
Status check_index(const RestoreContext& ctx);

}  // namespace ckpt::page_chain
