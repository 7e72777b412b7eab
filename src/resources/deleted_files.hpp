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

// Saves the contents of the deleted inode that `fd` of ctx.pid opens (once per inode in the
// whole tree) into a section of its own, records it in the image's deleted_files and returns
// its id. A file ckpt cannot save (not regular, too large) is refused, naming fd and path.
Result<int32_t> save(DumpContext& ctx, int fd, const std::string& path, const struct stat& st);

// Creates every deleted file of the image, filled with its saved contents and already
// unlinked, open in the restorer, by id.
Result<std::map<int32_t, ScopedFd>> recreate(const image::Store& store,
                                             const image::GenerationInfo& gen,
                                             const std::vector<schema::DeletedFile>& files);

}  // namespace ckpt::deleted_files
