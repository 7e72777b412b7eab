#pragma once
// Smaller /proc files: POSIX timers, file locks, auxv, cmdline/environ, links, personality,
// autogroup; and kcmp, which tells whether two processes share a kernel object.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

// One entry of /proc/PID/timers (needs CONFIG_CHECKPOINT_RESTORE).
struct PosixTimer {
  int id = 0;
  int signal = 0;
  uint64_t sigev_value = 0;       // the sigev_value pointer, as printed
  std::string notify;             // "signal", "none", "thread"
  bool notify_thread_id = false;  // SIGEV_THREAD_ID: target is a tid ("tid.N"), not "pid.N"
  pid_t notify_pid = 0;
  int clock_id = 0;
};

Result<std::vector<PosixTimer>> parse_timers(std::string_view text);
Result<std::vector<PosixTimer>> read_timers(pid_t pid);

// One line of /proc/locks or an fdinfo "lock:" line.
struct FileLock {
  int id = 0;
  bool blocked = false;               // "->": a waiter, not a held lock
  std::string kind;                   // POSIX, FLOCK, OFDLCK, LEASE, DELEG, ...
  std::string mode;                   // ADVISORY, MANDATORY; for leases ACTIVE, BREAKING, BREAKER
  std::string access;                 // READ, WRITE, UNLCK
  pid_t pid = 0;                      // -1 for OFD locks and leases without an owner
  std::optional<unsigned> dev_major;  // absent when the kernel printed "<none>"
  std::optional<unsigned> dev_minor;
  uint64_t inode = 0;
  uint64_t start = 0;
  std::optional<uint64_t> end;  // absent for "EOF"
};

Result<FileLock> parse_lock_line(std::string_view line);
Result<std::vector<FileLock>> parse_locks(std::string_view text);
Result<std::vector<FileLock>> read_locks();  // /proc/locks

// /proc/PID/auxv: (type, value) pairs up to and excluding AT_NULL.
using AuxvEntry = std::pair<uint64_t, uint64_t>;
Result<std::vector<AuxvEntry>> parse_auxv(std::span<const std::byte> data);
Result<std::vector<AuxvEntry>> read_auxv(pid_t pid);

// Raw bytes, NULs included.
Result<std::string> read_cmdline(pid_t pid);
Result<std::string> read_environ(pid_t pid);

Result<std::string> read_cwd(pid_t pid);
Result<std::string> read_root(pid_t pid);
Result<std::string> read_exe(pid_t pid);

Result<uint32_t> parse_personality(std::string_view text);
Result<uint32_t> read_personality(pid_t pid);

// /proc/PID/autogroup ("/autogroup-N nice V"): the nice value of the process's session's
// autogroup. Both answer nullopt for a process in no autogroup (the file is empty) and
// read_autogroup_nice also on a kernel without autogroups (no such file).
Result<std::optional<int32_t>> parse_autogroup_nice(std::string_view text);
Result<std::optional<int32_t>> read_autogroup_nice(pid_t pid);

// Whether fd_a of pid_a and fd_b of pid_b are one open file (kcmp KCMP_FILE: dup, fork).
Result<bool> same_open_file(pid_t pid_a, int fd_a, pid_t pid_b, int fd_b);
// Whether two processes share one address space (kcmp KCMP_VM: vfork, CLONE_VM).
Result<bool> same_memory(pid_t a, pid_t b);
// Whether two tasks (processes or threads) share one file table (kcmp KCMP_FILES: CLONE_FILES).
Result<bool> same_file_table(pid_t a, pid_t b);

}  // namespace ckpt::proc
