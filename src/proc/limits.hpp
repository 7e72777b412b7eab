#pragma once
// /proc/PID/limits: every resource limit of a process, readable by anyone. prlimit() on a
// process of another user needs CAP_SYS_RESOURCE, which root may lack (containers, this
// project's CI); the file does not.
#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

struct Limit {
  uint64_t cur = 0, max = 0;  // RLIM_INFINITY for "unlimited"
};

// Indexed by RLIMIT_* number, RLIM_NLIMITS entries; a limit the text does not list is an error.
Result<std::vector<Limit>> parse_limits(std::string_view text);
Result<std::vector<Limit>> read_limits(pid_t pid);

// "RLIMIT_NOFILE" for 7, "RLIMIT_42" for a number this ckpt does not know.
std::string rlimit_name(int resource);

}  // namespace ckpt::proc
