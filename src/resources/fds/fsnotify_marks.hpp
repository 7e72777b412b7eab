#pragma once
// What inotify and fanotify instances watch, as fdinfo shows it ("inotify wd:1 ino:35d
// sdev:fe00000 mask:2 ... f_handle:5d03..."), and the paths by which a restore can watch the same
// inodes, mounts and filesystems again. fdinfo names an inode only by a file handle, so the dump
// opens it (open_by_handle_at) to learn its current path.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "proc/mountinfo.hpp"

namespace ckpt::fds {

// The "key:hex" fields of one fdinfo line after its "inotify " or "fanotify " word.
using MarkFields = std::map<std::string, std::string, std::less<>>;
MarkFields mark_fields(std::string_view line);
// A hexadecimal field, or an error naming it and the line.
Result<uint64_t> hex_field(const MarkFields& f, std::string_view key, std::string_view line);

// A watched inode, found again by path.
struct WatchedPath {
  std::string path;
  uint64_t ino = 0;
  bool symlink = false;  // the watch is on the link itself (IN_DONT_FOLLOW, FAN_MARK_DONT_FOLLOW)
};

// Finds the path of the inode that a mark line names (ino, sdev, fhandle-type, f_handle), as
// `pid` would open it. Fails naming `what` when the inode has no path any more (deleted) or its
// filesystem gives no handles.
Result<WatchedPath> watched_path(pid_t pid, const std::vector<proc::Mount>& mounts,
                                 const MarkFields& f, std::string_view line, std::string_view what);
// Where a mount (by id) or a filesystem (by sdev) can be marked again.
Result<std::string> mount_path(pid_t pid, const std::vector<proc::Mount>& mounts, int mnt_id,
                               std::string_view what);
Result<std::string> filesystem_path(pid_t pid, const std::vector<proc::Mount>& mounts,
                                    uint64_t sdev, std::string_view what);

// At restore: the inode at `w.path` must still be the one watched, unless the caller accepts
// changed files.
Status check_watched(const WatchedPath& w, bool accept_changed, std::string_view what);
// Refuses an inotify or fanotify instance with events queued (FIONREAD): they are part of what the
// process has not seen yet, and ckpt cannot queue them again.
Status check_no_queued_events(int fd, std::string_view what);

}  // namespace ckpt::fds
