#pragma once
// Threads and children of a process.
#include <sys/types.h>

#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

// TIDs in /proc/PID/task, ascending (the main thread's tid equals pid).
Result<std::vector<pid_t>> list_threads(pid_t pid);

// Children of every thread, from /proc/PID/task/*/children (needs CONFIG_PROC_CHILDREN), sorted.
// Falls back to list_children_by_scan when the children files do not exist.
Result<std::vector<pid_t>> list_children(pid_t pid);
// Every process ID /proc lists (those of the PID namespace /proc belongs to), ascending.
Result<std::vector<pid_t>> list_pids();
// Scans /proc/*/stat for processes whose ppid is `pid`: slower, works without PROC_CHILDREN.
Result<std::vector<pid_t>> list_children_by_scan(pid_t pid);

// Parses a children file: space-separated pids.
Result<std::vector<pid_t>> parse_pid_list(std::string_view text);

}  // namespace ckpt::proc
