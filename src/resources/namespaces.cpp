#include "resources/namespaces.hpp"

#include <unistd.h>

#include <array>
#include <string>

#include "proc/proc_file.hpp"

namespace ckpt::namespaces {
namespace {

struct Kind {
  const char* link;  // under /proc/PID/ns
  const char* name;
  const char* seen;  // what a process there sees differently
};

constexpr std::array<Kind, 5> kKinds{{
    {"uts", "UTS", "its own hostname"},
    {"net", "network", "its own interfaces, addresses and ports"},
    {"time", "time", "its own monotonic and boot-time clocks"},
    {"ipc", "IPC", "its own System V objects and POSIX message queues"},
    {"cgroup", "cgroup", "its own cgroup root"},
}};

}  // namespace

Status check_same_as_ckpt(pid_t pid) {
  for (const Kind& k : kKinds) {
    auto theirs = proc::read_proc_link(pid, fmt::format("ns/{}", k.link));
    auto ours = proc::read_proc_link(::getpid(), fmt::format("ns/{}", k.link));
    // A kernel without that kind of namespace has no link: nothing to compare.
    if (!theirs.ok() || !ours.ok() || *theirs == *ours) continue;
    return errorf(
        "pid {}: its {} namespace ({}: {}) is not ckpt's, and ckpt cannot make one again yet (a "
        "restore would put the process in ckpt's)",
        pid, k.name, *theirs, k.seen);
  }
  return {};
}

}  // namespace ckpt::namespaces
