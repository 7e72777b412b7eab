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

}  // namespace ckpt::image::detail
