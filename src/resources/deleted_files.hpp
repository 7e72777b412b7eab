#pragma once
// Files deleted while open: the process holds the only way to them, so their contents go into
// the image (one section per inode, "files.deleted.N") with mode, owner and size. Restore makes
// a new unlinked file with that contents in the original directory, under the original name
// for the moment it takes to unlink it, so that /proc/PID/fd/N reads "<path> (deleted)" again.
// Every fd of one deleted inode is reopened from that one new inode.
//
// Limit: a deleted file larger than kMaxDeletedFileSize makes the dump fail (its whole contents,
// holes included, would be copied into every generation).
#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/scoped_fd.hpp"
#include "resources/context.hpp"

namespace ckpt::deleted_files {

inline constexpr uint64_t kMaxDeletedFileSize = 256ull << 20;

// If `link` (an fd's /proc link) names a deleted file, fills `j` for it (or refuses it, naming
// the fd and the path) and returns the status; std::nullopt when it is not a deleted file.
std::optional<Status> describe(pid_t pid, const std::string& link, const struct stat& st, json& j);

// Saves the contents of every deleted inode the fds of type "deleted" refer to (once per inode
// in the whole tree: a process whose inode another one saved records no copy of it)
// into sections of their own and records them in files["deleted"]; each fd gets "deleted_id".
Status save(DumpContext& ctx, json& fds, json& files);

// The key under which the restorer hands a recreated deleted file to the puppets.
std::string handed_key(int id);

// A recreated deleted file, open in the restorer, for the puppet to reopen its fds from.
struct Recreated {
  int id = 0;
  ScopedFd fd;
};

// Creates every deleted file of the image, filled with its saved contents and already unlinked.
Result<std::vector<Recreated>> recreate(const image::Store& store, const image::GenerationInfo& gen,
                                        const json& image);

}  // namespace ckpt::deleted_files
