#pragma once
// Open file descriptors: /proc/PID/fd/N links and /proc/PID/fdinfo/N.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

struct EpollTarget {  // one "tfd:" line: a registration in an epoll instance
  int tfd = 0;
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t pos = 0;
  uint64_t ino = 0;
  uint64_t sdev = 0;
};

struct TimerSpec {
  int64_t sec = 0;
  int64_t nsec = 0;
};

struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;  // open flags (printed in octal)
  int mnt_id = 0;
  uint64_t ino = 0;

  // eventfd
  std::optional<uint64_t> eventfd_count;
  std::optional<uint64_t> eventfd_id;
  std::optional<bool> eventfd_semaphore;
  // epoll
  std::vector<EpollTarget> epoll_targets;
  // signalfd
  std::optional<uint64_t> sigmask;
  // timerfd
  std::optional<int> timer_clockid;
  std::optional<uint64_t> timer_ticks;
  std::optional<uint32_t> timer_settime_flags;
  std::optional<TimerSpec> timer_value;
  std::optional<TimerSpec> timer_interval;
  // pidfd: the process it names in the reader's PID namespace; 0 when not in it, -1 when gone
  std::optional<int> pidfd_pid;
  // Kept as printed: inotify/fanotify marks and "lock:" lines (see misc.hpp parse_lock_line).
  std::vector<std::string> inotify_lines;
  std::vector<std::string> fanotify_lines;
  std::vector<std::string> lock_lines;  // without the "lock:\t" prefix
  // Every line no field above consumed, for resource types this parser does not know.
  std::vector<std::string> other_lines;
};

Result<FdInfo> parse_fdinfo(std::string_view text);
Result<FdInfo> read_fdinfo(pid_t pid, int fd);
// Open descriptor numbers, ascending.
Result<std::vector<int>> list_fds(pid_t pid);
// readlink /proc/PID/fd/N: a path, "socket:[123]", "pipe:[45]", "anon_inode:[eventfd]"...
Result<std::string> read_fd_link(pid_t pid, int fd);

// The features a userfaultfd was opened with (UFFDIO_API), from its fdinfo's
// "API:\t<api>:<features>:<ioctls>" line; nullopt without one.
std::optional<uint64_t> userfaultfd_features(const FdInfo& info);
// Whether a process of this PID namespace holds a userfaultfd with any of `features`: every fd
// of every process is looked at, but for those gone meanwhile and those whose descriptors we may
// not read (EACCES, EPERM); another failure is an error, the answer being unknown. Only the file
// table of each thread-group leader: a thread that unshared its own is not seen.
Result<bool> some_userfaultfd_has(uint64_t features);

}  // namespace ckpt::proc
