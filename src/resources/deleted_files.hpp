#pragma once
// Files deleted while open: the process holds the only way to them, so their contents go into
// the image (one section per inode, "files.deleted.N") with mode, owner and size. Restore makes
// a new unlinked file with that contents in the original directory, under the original name
// for the moment it takes to unlink it, so that /proc/PID/fd/N reads "<path> (deleted)" again.
// Every fd of one deleted inode is reopened from that one new inode.
//
// A deleted directory (an open fd or a cwd) has no contents: restore makes it again under its
// old name (or a hidden one beside it; missing parents are made for the moment too), opens it
// and removes it, so lookups in it fail with ENOENT as before. A deleted regular file mapped
// shared or private is mapped again from its one recreated inode (Vma::deleted_file): processes
// sharing it see each other's writes again. A deleted executable is one more such file: the
// restore makes the recreated inode the process's exe (TaskRecord::exe_deleted).
//
// Limit: a deleted file larger than kMaxDeletedFileSize makes the dump fail (its whole contents,
// holes included, would be copied into every generation).
#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "resources/context.hpp"

namespace ckpt::deleted_files {

inline constexpr uint64_t kMaxDeletedFileSize = 256ull << 20;

// Saves the contents of the deleted inode that `fd` of ctx.pid opens (once per inode in the
// whole tree) into a section of its own, records it in the image's deleted_files and returns
// its id. A file ckpt cannot save (not regular, too large) is refused, naming fd and path.
Result<int32_t> save(DumpContext& ctx, int fd, const std::string& path, const struct stat& st);

// The id of the deleted regular file mapped at `m` (saved as for an fd), or nothing when it is
// not one ckpt maps again from a file (too large: its pages are saved instead).
Result<std::optional<int32_t>> save_mapping(DumpContext& ctx, const proc::MapEntry& m);

// The id of ctx.pid's current directory when it was removed (`link`: /proc/PID/cwd's text).
Result<std::optional<int32_t>> save_cwd(DumpContext& ctx, const std::string& link);

// The id of ctx.pid's executable when it was removed while it runs (`link`: /proc/PID/exe's
// text), its contents saved as for a deleted file; one too large to save is refused, naming it.
Result<std::optional<int32_t>> save_exe(DumpContext& ctx, const std::string& link);

// The key under which the restorer hands the recreated inode `id` to every puppet.
std::string handed_key(int32_t id);

// Creates every deleted file of the image, filled with its saved contents and already
// unlinked, open in the restorer, by id. Those of `executables` are open read-only: the kernel
// makes a file a process's exe only while nobody may write to it.
Result<std::map<int32_t, ScopedFd>> recreate(const image::Store& store,
                                             const image::GenerationInfo& gen,
                                             const std::vector<schema::DeletedFile>& files,
                                             const std::set<int32_t>& executables);

}  // namespace ckpt::deleted_files
