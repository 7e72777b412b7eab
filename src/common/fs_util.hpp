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

// With O_CREAT, a file this process owns gets exactly `mode`, whatever the umask.
Result<ScopedFd> open_file(const std::filesystem::path& path, int flags, mode_t mode = 0600);
// Opens an existing file for reading that must be a regular file: never blocks (a FIFO put in
// its place), never follows a final symbolic link, and names what was found instead.
Result<ScopedFd> open_regular_file(const std::filesystem::path& path);
Result<std::vector<std::byte>> read_regular_file(const std::filesystem::path& path);
// "a FIFO", "a directory", ... for messages about a file that should have been another kind.
std::string_view file_kind(mode_t mode);
Status fsync_fd(int fd, std::string_view what);
Status fsync_dir(const std::filesystem::path& dir);

// Writes `data` to dir/name durably: a temporary file in dir, fsync, rename over name, fsync dir.
// After a crash at any point dir/name is either the old file or the new one, never partial.
Status write_file_atomic(const std::filesystem::path& dir, const std::string& name,
                         std::span<const std::byte> data, mode_t mode = 0600);

// Creates a directory with exactly `mode` whatever the umask (and missing parents likewise).
Status make_dirs(const std::filesystem::path& dir, mode_t mode = 0700);

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace ckpt
