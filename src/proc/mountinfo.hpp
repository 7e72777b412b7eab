#pragma once
// /proc/PID/mountinfo: the mounts a process sees, for naming a mount or a filesystem by a path
// (fanotify marks, inotify watches found by file handle).
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

struct Mount {
  int id = 0;
  unsigned major = 0, minor = 0;  // of the filesystem (st_dev)
  std::string root;               // the directory of the filesystem mounted here
  std::string mount_point;        // as the process sees it
};

// Mount points with their octal escapes (\040 for a space) decoded.
Result<std::vector<Mount>> parse_mountinfo(std::string_view text);
Result<std::vector<Mount>> read_mountinfo(pid_t pid);

// The kernel's own encoding of a device number (super_block s_dev, printed by fdinfo as "sdev"):
// 12 bits of major above 20 bits of minor.
inline unsigned kernel_dev_major(uint64_t sdev) {
  return static_cast<unsigned>(sdev >> 20);
}
inline unsigned kernel_dev_minor(uint64_t sdev) {
  return static_cast<unsigned>(sdev & 0xfffff);
}

}  // namespace ckpt::proc
