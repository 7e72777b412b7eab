#include "resources/namespaces.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <optional>
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

constexpr std::array<Kind, 3> kKinds{{
    {"net", "network", "its own interfaces, addresses and ports"},
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

// The offsets of `pid`'s time namespace ("monotonic 1000 0" lines; older kernels give the
// clock's number instead of its name).
Result<schema::TimeNsRecord> offsets_of(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string text, proc::read_proc_file(pid, "timens_offsets"));
  schema::TimeNsRecord out;
  int found = 0;
  for (std::string_view rest = text; !rest.empty();) {
    std::string line(rest.substr(0, rest.find('\n')));
    rest.remove_prefix(std::min(rest.size(), line.size() + 1));
    char clock[32];
    long long sec = 0, nsec = 0;
    if (std::sscanf(line.c_str(), "%31s %lld %lld", clock, &sec, &nsec) != 3) continue;
    std::string_view c = clock;
    if (c == "monotonic" || c == std::to_string(CLOCK_MONOTONIC))
      out.monotonic_sec = sec, out.monotonic_nsec = nsec, found |= 1;
    if (c == "boottime" || c == std::to_string(CLOCK_BOOTTIME))
      out.boottime_sec = sec, out.boottime_nsec = nsec, found |= 2;
  }
  if (found != 3) return errorf("pid {}: timens_offsets without both clocks: '{}'", pid, text);
  return out;
}

// Every process of the tree in the root's namespace of kind `link`; the root's link.
Result<std::string> one_for_all(const std::vector<DumpContext*>& procs, const char* link,
                                const char* name) {
  pid_t root = procs.front()->pid;
  std::string at = fmt::format("ns/{}", link);
  CKPT_TRY_ASSIGN(std::string root_ns, proc::read_proc_link(root, at));
  for (auto* ctx : procs) {
    if (ctx->zombie) continue;
    CKPT_TRY_ASSIGN(std::string ns, proc::read_proc_link(ctx->pid, at));
    if (ns != root_ns)
      return errorf(
          "pid {}: its {} namespace ({}) is not the root's ({}, pid {}), and ckpt makes one for "
          "the whole tree",
          ctx->pid, name, ns, root_ns, root);
  }
  return root_ns;
}

Status dump_uts(const std::vector<DumpContext*>& procs) {
  CKPT_TRY_ASSIGN(std::string root_uts, one_for_all(procs, "uts", "UTS"));
  CKPT_TRY_ASSIGN(std::string ours, proc::read_proc_link(::getpid(), "ns/uts"));
  if (root_uts == ours) return {};
  CKPT_TRY_ASSIGN(schema::UtsRecord names, names_in(procs.front()->pid));
  procs.front()->tree->image.uts = std::move(names);
  return {};
}

// A process whose children would go to another time namespace than its own (it called
// unshare(CLONE_NEWTIME) and has not entered it) is refused: ckpt makes one for the tree.
Status dump_time(const std::vector<DumpContext*>& procs) {
  CKPT_TRY_ASSIGN(std::string root_time, one_for_all(procs, "time", "time"));
  for (auto* ctx : procs) {
    if (ctx->zombie) continue;
    auto children = proc::read_proc_link(ctx->pid, "ns/time_for_children");
    if (children.ok() && *children != root_time)
      return errorf(
          "pid {}: its children would be in another time namespace ({}) than its own ({}): "
          "unshare(CLONE_NEWTIME) without entering it, which ckpt cannot make again",
          ctx->pid, *children, root_time);
  }
  auto ours = proc::read_proc_link(::getpid(), "ns/time");
  if (!ours.ok() || root_time == *ours) return {};
  CKPT_TRY_ASSIGN(schema::TimeNsRecord offsets, offsets_of(procs.front()->pid));
  procs.front()->tree->image.time_ns = offsets;
  return {};
}

}  // namespace

Status dump(const std::vector<DumpContext*>& procs) {
  CKPT_TRY(dump_uts(procs));
  return dump_time(procs);
}

Status make_uts(const schema::UtsRecord& uts) {
  if (::unshare(CLONE_NEWUTS) < 0) return sys_error("unshare(CLONE_NEWUTS)");
  if (::sethostname(uts.hostname.data(), uts.hostname.size()) < 0)
    return sys_error(fmt::format("sethostname {}", uts.hostname));
  if (::setdomainname(uts.domainname.data(), uts.domainname.size()) < 0)
    return sys_error(fmt::format("setdomainname {}", uts.domainname));
  return {};
}

// unshare() takes effect for the children only; the offsets can be set until a process is in
// the namespace, and setns() then puts this (single-threaded) puppet there too.
Status make_time(const schema::TimeNsRecord& t) {
  if (::unshare(CLONE_NEWTIME) < 0) return sys_error("unshare(CLONE_NEWTIME)");
  std::string offsets =
      fmt::format("{} {} {}\n{} {} {}\n", CLOCK_MONOTONIC, t.monotonic_sec, t.monotonic_nsec,
                  CLOCK_BOOTTIME, t.boottime_sec, t.boottime_nsec);
  ScopedFd file(::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC));
  if (!file ||
      ::write(file.get(), offsets.data(), offsets.size()) != static_cast<ssize_t>(offsets.size()))
    return sys_error(
        fmt::format("writing the time namespace's offsets (monotonic {}.{:09}, "
                    "boottime {}.{:09})",
                    t.monotonic_sec, t.monotonic_nsec, t.boottime_sec, t.boottime_nsec));
  ScopedFd ns(::open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC));
  if (!ns || ::setns(ns.get(), CLONE_NEWTIME) < 0)
    return sys_error("setns into the time namespace");
  return {};
}

Status check_same_as_ckpt(pid_t pid) {
  // ckpt's own, read once per process: ckpt never moves to another of these kinds.
  static const std::array<std::optional<std::string>, kKinds.size()> ours = [] {
    std::array<std::optional<std::string>, kKinds.size()> links;
    for (size_t i = 0; i < kKinds.size(); ++i)
      if (auto l = proc::read_proc_link(::getpid(), fmt::format("ns/{}", kKinds[i].link)); l.ok())
        links[i] = *l;
    return links;
  }();
  for (size_t i = 0; i < kKinds.size(); ++i) {
    const Kind& k = kKinds[i];
    auto theirs = proc::read_proc_link(pid, fmt::format("ns/{}", k.link));
    // A kernel without that kind of namespace has no link: nothing to compare.
    if (!theirs.ok() || !ours[i] || *theirs == *ours[i]) continue;
    return errorf(
        "pid {}: its {} namespace ({}: {}) is not ckpt's, and ckpt cannot make one again yet (a "
        "restore would put the process in ckpt's)",
        pid, k.name, *theirs, k.seen);
  }
  return {};
}

}  // namespace ckpt::namespaces
