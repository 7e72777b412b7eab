#pragma once
// Pieces shared by the files of the store that are not part of its interface.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "image/store.hpp"

namespace ckpt::image::detail {

// Reads and writes of image data move this much at a time: large enough that system call cost
// vanishes next to copying, small enough to stay in cache-friendly territory.
inline constexpr size_t kIoChunk = size_t{4} << 20;

// A new temporary generation directory in `store`, locked (flock) by the returned fd for as long
// as the writer lives so that a concurrent open() does not take it for a leftover.
struct TempDir {
  std::filesystem::path path;
  ScopedFd lock;
};
Result<TempDir> make_temp_dir(const std::filesystem::path& store);

// Renames the finished temporary directory to the next free generation id and fsyncs the store;
// returns the id.
Result<std::string> publish(const std::filesystem::path& store, const std::filesystem::path& tmp);

Result<std::unique_ptr<GenerationWriter>> make_writer(const std::filesystem::path& store,
                                                      WriteOptions opts);

int64_t now_unix_ns();

// Opens a file of a store for reading: a regular file (open_regular_file) whose owner and mode
// pass `trust`.
Result<ScopedFd> open_store_file(const std::filesystem::path& path, Trust trust);
// Checks the owner and mode of one file or directory of a store against `trust`.
Status check_trusted(const struct stat& st, const std::filesystem::path& path, Trust trust);
// A directory of a store (itself, or a generation): a directory, not a symbolic link, trusted.
Status check_store_dir(const std::filesystem::path& dir, Trust trust);
// `from` and every directory above it: owned by the caller or root, and writable by no one else
// unless sticky (like /tmp). `store` names the store in the message.
Status check_dirs_above(const std::filesystem::path& store, const std::filesystem::path& from,
                        Trust trust);

}  // namespace ckpt::image::detail
