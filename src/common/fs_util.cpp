#include "common/fs_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace ckpt {

Status write_all(int fd, std::span<const std::byte> data, std::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(fmt::format("write {}", what));
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Status pwrite_all(int fd, std::span<const std::byte> data, off_t offset, std::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(fmt::format("write {} at offset {}", what, offset));
    }
    data = data.subspan(static_cast<size_t>(n));
    offset += n;
  }
  return {};
}

Status read_exact(int fd, std::span<std::byte> data, std::string_view what) {
  size_t total = data.size();
  while (!data.empty()) {
    ssize_t n = ::read(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(fmt::format("read {}", what));
    }
    if (n == 0)
      return make_error(
          fmt::format("read {}: truncated (got {} of {} bytes)", what, total - data.size(), total));
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Status pread_exact(int fd, std::span<std::byte> data, off_t offset, std::string_view what) {
  size_t total = data.size();
  off_t start = offset;
  while (!data.empty()) {
    ssize_t n = ::pread(fd, data.data(), data.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(fmt::format("read {} at offset {}", what, offset));
    }
    if (n == 0)
      return make_error(fmt::format("read {} at offset {}: truncated (got {} of {} bytes)", what,
                                    start, total - data.size(), total));
    data = data.subspan(static_cast<size_t>(n));
    offset += n;
  }
  return {};
}

Result<ScopedFd> open_file(const std::filesystem::path& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return sys_error(fmt::format("open {}", path.string()));
  ScopedFd guard(fd);
  struct stat st;
  // The umask may have taken bits away (or an existing file may have more): images hold memory.
  if ((flags & O_CREAT) && ::fstat(fd, &st) == 0 && st.st_uid == ::geteuid() &&
      (st.st_mode & 07777) != mode && ::fchmod(fd, mode) < 0)
    return sys_error(fmt::format("chmod {}", path.string()));
  return guard;
}

std::string_view file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFIFO:
      return "a FIFO";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFSOCK:
      return "a socket";
    case S_IFLNK:
      return "a symbolic link";
    default:
      return "a file of unknown kind";
  }
}

Result<ScopedFd> open_regular_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    struct stat st;
    // ELOOP is O_NOFOLLOW's answer to a link; a device on a nodev mount answers EACCES.
    if (err != ENOENT && ::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      return make_error(
          fmt::format("{}: {}, where a regular file belongs", path.string(), file_kind(st.st_mode)),
          err);
    return sys_error(err, fmt::format("open {}", path.string()));
  }
  ScopedFd guard(fd);
  struct stat st;
  if (::fstat(fd, &st) < 0) return sys_error(fmt::format("stat {}", path.string()));
  if (!S_ISREG(st.st_mode))
    return make_error(
        fmt::format("{}: {}, where a regular file belongs", path.string(), file_kind(st.st_mode)),
        EINVAL);
  return guard;
}

Result<std::vector<std::byte>> read_regular_file(const std::filesystem::path& path) {
  CKPT_TRY_ASSIGN(ScopedFd fd, open_regular_file(path));
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", path.string()));
  std::vector<std::byte> data(static_cast<size_t>(st.st_size));
  CKPT_TRY(read_exact(fd.get(), data, path.string()));
  return data;
}

Result<std::vector<std::byte>> read_file(const std::filesystem::path& path) {
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(path, O_RDONLY));
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", path.string()));
  std::vector<std::byte> data(static_cast<size_t>(st.st_size));
  CKPT_TRY(read_exact(fd.get(), data, path.string()));
  return data;
}

Status fsync_fd(int fd, std::string_view what) {
  if (::fsync(fd) < 0) return sys_error(fmt::format("fsync {}", what));
  return {};
}

Status fsync_dir(const std::filesystem::path& dir) {
  CKPT_TRY_ASSIGN(ScopedFd fd, open_file(dir, O_RDONLY | O_DIRECTORY));
  return fsync_fd(fd.get(), dir.string());
}

Status write_file_atomic(const std::filesystem::path& dir, const std::string& name,
                         std::span<const std::byte> data, mode_t mode) {
  static std::atomic<unsigned> counter{0};
  std::string tmp_name = fmt::format(".tmp.{}.{}.{}", name, getpid(), counter++);
  auto tmp = dir / tmp_name;
  {
    CKPT_TRY_ASSIGN(ScopedFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_EXCL, mode));
    Status st = write_all(fd.get(), data, tmp.string());
    if (st.ok()) st = fsync_fd(fd.get(), tmp.string());
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  auto final_path = dir / name;
  if (::rename(tmp.c_str(), final_path.c_str()) < 0) {
    Error e = sys_error(fmt::format("rename {} to {}", tmp.string(), final_path.string()));
    ::unlink(tmp.c_str());
    return e;
  }
  return fsync_dir(dir);
}

Status make_dirs(const std::filesystem::path& dir, mode_t mode) {
  if (dir.empty()) return {};
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return make_error(fmt::format("{}: not a directory", dir.string()), ENOTDIR);
    return {};
  }
  if (dir.has_parent_path() && dir.parent_path() != dir)
    CKPT_TRY(make_dirs(dir.parent_path(), mode));
  if (::mkdir(dir.c_str(), mode) < 0) {
    if (errno == EEXIST) return {};  // made meanwhile by someone else: theirs to set up
    return sys_error(fmt::format("mkdir {}", dir.string()));
  }
  // mkdir's mode passes through the umask; ours is what the caller asked for.
  if (::chmod(dir.c_str(), mode) < 0) return sys_error(fmt::format("chmod {}", dir.string()));
  return {};
}

}  // namespace ckpt
