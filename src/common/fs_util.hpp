#pragma once
// Small file helpers shared by everything that writes images: full reads and writes that retry on
// EINTR and short counts, and durable atomic publication of a file.
#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt {

// Writes all bytes; `what` names the file in the error ("write /d/x.dat: No space left on device").
Status write_all(int fd, std::span<const std::byte> data, std::string_view what);
Status pwrite_all(int fd, std::span<const std::byte> data, off_t offset, std::string_view what);
// Reads exactly data.size() bytes or fails (a short file is an error naming `what`).
Status read_exact(int fd, std::span<std::byte> data, std::string_view what);
Status pread_exact(int fd, std::span<std::byte> data, off_t offset, std::string_view what);
Result<std::vector<std::byte>> read_file(const std::filesystem::path& path);

Result<ScopedFd> open_file(const std::filesystem::path& path, int flags, mode_t mode = 0600);
Status fsync_fd(int fd, std::string_view what);
Status fsync_dir(const std::filesystem::path& dir);

// Writes `data` to dir/name durably: a temporary file in dir, fsync, rename over name, fsync dir.
// After a crash at any point dir/name is either the old file or the new one, never partial.
Status write_file_atomic(const std::filesystem::path& dir, const std::string& name,
                         std::span<const std::byte> data, mode_t mode = 0600);

// Creates a directory with `mode` (and missing parents with the same mode).
Status make_dirs(const std::filesystem::path& dir, mode_t mode = 0700);

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace ckpt
