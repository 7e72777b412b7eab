#include "resources/fds/fsnotify_marks.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <memory>

#include "common/scoped_fd.hpp"
#include "proc/fdinfo.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::fds {
namespace {

Result<std::vector<unsigned char>> hex_bytes(std::string_view hex, std::string_view line) {
  std::vector<unsigned char> out;
  if (hex.size() % 2) return errorf("odd f_handle in \"{}\"", line);
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto b = proc::parse_u64(hex.substr(i, 2), 16);
    if (!b) return errorf("bad f_handle in \"{}\"", line);
    out.push_back(static_cast<unsigned char>(*b));
  }
  return out;
}

// ckpt's way to a directory as `pid` sees it (a chrooted process sees / elsewhere).
std::string seen_by(pid_t pid, const std::string& path) {
  return proc::proc_path(pid, "root") + path;
}

// The path ckpt itself opens for a path `pid` sees, and the mount and filesystem it leads to
// (another mount may cover the one named).
struct SeenPath {
  std::string path;
  int mnt_id = 0;
  dev_t dev = 0;
};

Result<SeenPath> seen_path(pid_t pid, const std::string& path) {
  ScopedFd fd(::open(seen_by(pid, path).c_str(), O_PATH | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) < 0)
    return sys_error(fmt::format("open {} as pid {} sees it", path, pid));
  SeenPath out;
  CKPT_TRY_ASSIGN(out.path, proc::read_proc_link(::getpid(), fmt::format("fd/{}", fd.get())));
  CKPT_TRY_ASSIGN(proc::FdInfo info, proc::read_fdinfo(::getpid(), fd.get()));
  out.mnt_id = info.mnt_id;
  out.dev = st.st_dev;
  return out;
}

// Opens the inode of a file handle through mount `m` and returns its path, or "" when that mount
// does not show it (a bind mount of another part of the filesystem).
Result<std::string> open_handle_via(pid_t pid, const proc::Mount& m, file_handle& h,
                                    const WatchedPath& want) {
  // An O_PATH mount fd works for most inodes but makes open_by_handle_at fail with EBADF for a
  // symbolic link (kernel 6.18); a mount point is nearly always a readable directory.
  std::string point = seen_by(pid, m.mount_point);
  ScopedFd mount_fd(::open(point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!mount_fd) mount_fd = ScopedFd(::open(point.c_str(), O_PATH | O_CLOEXEC));
  if (!mount_fd) return std::string();
  ScopedFd fd(::open_by_handle_at(mount_fd.get(), &h, O_PATH | O_CLOEXEC));
  if (!fd) return sys_error("open_by_handle_at");
  CKPT_TRY_ASSIGN(std::string path,
                  proc::read_proc_link(::getpid(), fmt::format("fd/{}", fd.get())));
  struct stat st;
  if (!path.starts_with('/') || ::lstat(path.c_str(), &st) < 0 ||
      static_cast<uint64_t>(st.st_ino) != want.ino)
    return std::string();
  return path;
}

}  // namespace

MarkFields mark_fields(std::string_view line) {
  MarkFields out;
  proc::next_token(line);  // "inotify" or "fanotify"
  for (auto tok = proc::next_token(line); !tok.empty(); tok = proc::next_token(line)) {
    size_t colon = tok.find(':');
    if (colon != std::string_view::npos)
      out.emplace(std::string(tok.substr(0, colon)), std::string(tok.substr(colon + 1)));
  }
  return out;
}

Result<uint64_t> hex_field(const MarkFields& f, std::string_view key, std::string_view line) {
  auto it = f.find(key);
  auto v = it == f.end() ? std::nullopt : proc::parse_u64(it->second, 16);
  if (!v) return errorf("no {} in fdinfo line \"{}\"", key, line);
  return *v;
}

Result<WatchedPath> watched_path(pid_t pid, const std::vector<proc::Mount>& mounts,
                                 const MarkFields& f, std::string_view line,
                                 std::string_view what) {
  WatchedPath w;
  CKPT_TRY_ASSIGN(w.ino, hex_field(f, "ino", line));
  CKPT_TRY_ASSIGN(uint64_t sdev, hex_field(f, "sdev", line));
  auto type = hex_field(f, "fhandle-type", line);
  auto it = f.find("f_handle");
  if (!type || it == f.end())
    return errorf(
        "{} is on inode {} of a filesystem that gives no file handles, so ckpt cannot "
        "find it again",
        what, w.ino);
  CKPT_TRY_ASSIGN(auto bytes, hex_bytes(it->second, line));
  auto storage = std::make_unique<unsigned char[]>(sizeof(file_handle) + bytes.size());
  auto* h = reinterpret_cast<file_handle*>(storage.get());
  h->handle_bytes = static_cast<unsigned>(bytes.size());
  h->handle_type = static_cast<int>(*type);
  std::copy(bytes.begin(), bytes.end(), h->f_handle);
  Error last = errorf("no mount of device {}:{}", proc::kernel_dev_major(sdev),
                      proc::kernel_dev_minor(sdev));
  for (const auto& m : mounts) {
    if (m.major != proc::kernel_dev_major(sdev) || m.minor != proc::kernel_dev_minor(sdev))
      continue;
    auto path = open_handle_via(pid, m, *h, w);
    if (!path) {
      last = path.error();
      continue;
    }
    if (path->empty()) continue;
    w.path = std::move(*path);
    struct stat st;
    w.symlink = ::lstat(w.path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
    return w;
  }
  return errorf(
      "{} is on inode {}, which has no path any more (deleted?), so ckpt cannot watch "
      "it again ({})",
      what, w.ino, last.message);
}

Result<std::string> mount_path(pid_t pid, const std::vector<proc::Mount>& mounts, int mnt_id,
                               std::string_view what) {
  for (const auto& m : mounts) {
    if (m.id != mnt_id) continue;
    CKPT_TRY_ASSIGN(SeenPath seen, seen_path(pid, m.mount_point));
    // A mount with another mounted over it (on the same point) cannot be named by its path.
    if (seen.mnt_id != mnt_id)
      return errorf("{} is on mount {} ({}), which another mount covers", what, mnt_id,
                    m.mount_point);
    return seen.path;
  }
  return errorf("{} is on mount {}, which pid {} does not see", what, mnt_id, pid);
}

Result<std::string> filesystem_path(pid_t pid, const std::vector<proc::Mount>& mounts,
                                    uint64_t sdev, std::string_view what) {
  unsigned major = proc::kernel_dev_major(sdev), minor = proc::kernel_dev_minor(sdev);
  for (const auto& m : mounts) {
    if (m.major != major || m.minor != minor) continue;
    auto seen = seen_path(pid, m.mount_point);
    if (seen && ::major(seen->dev) == major && ::minor(seen->dev) == minor) return seen->path;
  }
  return errorf("{} is on filesystem {}:{}, which pid {} has no uncovered mount of", what, major,
                minor, pid);
}

Status check_watched(const WatchedPath& w, bool accept_changed, std::string_view what) {
  struct stat st;
  if (::lstat(w.path.c_str(), &st) < 0) return sys_error(fmt::format("{}: {}", what, w.path));
  if (!accept_changed && static_cast<uint64_t>(st.st_ino) != w.ino)
    return errorf("{}: {} is another file than at the dump (inode {}, was {})", what, w.path,
                  st.st_ino, w.ino);
  return {};
}

Status check_no_queued_events(int fd, std::string_view what) {
  int n = 0;
  if (::ioctl(fd, FIONREAD, &n) < 0) return sys_error(fmt::format("FIONREAD on {}", what));
  if (n > 0)
    return errorf(
        "{} has {} bytes of events the process has not read, which ckpt cannot queue again (dump "
        "once it has read them)",
        what, n);
  return {};
}

}  // namespace ckpt::fds
