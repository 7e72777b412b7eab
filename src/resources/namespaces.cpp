#include "resources/namespaces.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <string>
#include <system_error>
#include <thread>

#include "common/scoped_fd.hpp"
#include "proc/proc_file.hpp"
#include "resources/context.hpp"

namespace ckpt::namespaces {
namespace {

struct Kind {
  const char* link;  // under /proc/PID/ns
  const char* name;
  const char* seen;  // what a process there sees differently
};

constexpr std::array<Kind, 4> kKinds{{
    {"net", "network", "its own interfaces, addresses and ports"},
    {"time", "time", "its own monotonic and boot-time clocks"},
    {"ipc", "IPC", "its own System V objects and POSIX message queues"},
    {"cgroup", "cgroup", "its own cgroup root"},
}};

// The names of `pid`'s UTS namespace, read by a thread of ours that joins it: /proc/sys shows
// those of the reader's namespace.
Result<schema::UtsRecord> names_in(pid_t pid) {
  ScopedFd ns(::open(fmt::format("/proc/{}/ns/uts", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return sys_error(fmt::format("pid {}: open its UTS namespace", pid));
  Result<schema::UtsRecord> out = errorf("pid {}: its UTS namespace's names were not read", pid);
  auto read = [&] {
    utsname u{};
    if (::setns(ns.get(), CLONE_NEWUTS) < 0)
      out = sys_error(fmt::format("pid {}: setns into its UTS namespace", pid));
    else if (::uname(&u) < 0)
      out = sys_error(fmt::format("pid {}: uname in its UTS namespace", pid));
    else
      out = schema::UtsRecord{u.nodename, u.domainname};
  };
  try {
    std::thread(read).join();
  } catch (const std::system_error& e) {
    return errorf("pid {}: no thread to read its UTS namespace's names: {}", pid, e.what());
  }
  return out;
}

}  // namespace

Status dump(const std::vector<DumpContext*>& procs) {
  pid_t root = procs.front()->pid;
  CKPT_TRY_ASSIGN(std::string root_uts, proc::read_proc_link(root, "ns/uts"));
  for (auto* ctx : procs) {
    if (ctx->zombie) continue;
    CKPT_TRY_ASSIGN(std::string uts, proc::read_proc_link(ctx->pid, "ns/uts"));
    if (uts != root_uts)
      return errorf(
          "pid {}: its UTS namespace ({}) is not the root's ({}, pid {}), and ckpt makes one for "
          "the whole tree",
          ctx->pid, uts, root_uts, root);
  }
  CKPT_TRY_ASSIGN(std::string ours, proc::read_proc_link(::getpid(), "ns/uts"));
  if (root_uts == ours) return {};
  CKPT_TRY_ASSIGN(schema::UtsRecord names, names_in(root));
  procs.front()->tree->image.uts = std::move(names);
  return {};
}

Status make_uts(const schema::UtsRecord& uts) {
  if (::unshare(CLONE_NEWUTS) < 0) return sys_error("unshare(CLONE_NEWUTS)");
  if (::sethostname(uts.hostname.data(), uts.hostname.size()) < 0)
    return sys_error(fmt::format("sethostname {}", uts.hostname));
  if (::setdomainname(uts.domainname.data(), uts.domainname.size()) < 0)
    return sys_error(fmt::format("setdomainname {}", uts.domainname));
  return {};
}

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
