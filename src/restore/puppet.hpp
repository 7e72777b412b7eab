#pragma once
// The puppet: a child of the restorer created with the image's PID (clone3 set_tid). It sets up
// what is easiest from inside (descriptors, cwd, rlimits), maps the restorer page (a syscall
// instruction plus scratch memory), reports ready and waits to be taken over through ptrace.
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "ptrace/tracee.hpp"
#include "resources/context.hpp"

namespace ckpt {

struct PuppetPlan {
  pid_t pid = 0;
  const json* image = nullptr;
  bool shell_job = false;
  uint64_t trampoline = 0;
  std::vector<int> keep_fds;            // in the restorer; their numbers in the puppet come back
  std::map<int, size_t> deleted_files;  // recreated deleted file id -> index in keep_fds
};

// Owns the puppet process: kills and reaps it unless released (when it has become the
// restored process).
class Puppet {
 public:
  static Result<Puppet> create(PuppetPlan plan);
  Puppet(Puppet&& o) noexcept;
  Puppet& operator=(Puppet&&) = delete;
  ~Puppet();

  pid_t pid() const { return pid_; }
  ptrace::Tracee& tracee() { return tracee_; }
  // fd numbers inside the puppet for the plan's keep_fds, in order.
  const std::vector<int>& kept_fds() const { return kept_; }
  void release() { pid_ = 0; }

 private:
  Puppet(pid_t pid, ptrace::Tracee t) : pid_(pid), tracee_(std::move(t)) {}
  pid_t pid_ = 0;
  ptrace::Tracee tracee_;
  std::vector<int> kept_;
};

// A page-sized hole for the restorer page: free in the image and in this process.
Result<uint64_t> choose_trampoline(const json& image);

}  // namespace ckpt
