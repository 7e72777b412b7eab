#pragma once
// The puppets: one child per process of the image, each created with its PID (clone3 set_tid)
// by its parent's puppet, the root's by the restorer. Each joins its group and session, creates
// its own children, then sets up what is easiest from inside (descriptors, cwd, rlimits), maps
// the restorer page (a syscall instruction plus scratch memory), reports ready and waits to be
// taken over through ptrace.
#include <sys/types.h>

#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"
#include "ptrace/tracee.hpp"
#include "resources/context.hpp"
#include "resources/tree_plan.hpp"

namespace ckpt {

struct PuppetSpec {
  pid_t pid = 0;
  const schema::ProcessRecord* rec = nullptr;  // this process's part of the image
  tree::TreePlan tree;                         // how it gets its session and group
  uint64_t trampoline = 0;
  bool zombie = false;           // ends at once, to be waited for by its parent
  std::vector<size_t> children;  // indices into PuppetPlan::processes
};

struct PuppetPlan {
  const schema::ImageRoot* image = nullptr;
  std::vector<PuppetSpec> processes;  // [0] is the root; parents come before their children
  bool shell_job = false;
  bool vdso_proxy = false;  // see vdso.hpp
  HandedFds handed;         // open in the restorer; every puppet gets them all
  // The root's memory that the puppets start with (cow_shared::premap), when there is any.
  const cow_shared::Base* base = nullptr;
  // The root is PID 1 of a new PID namespace: it mounts that namespace's /proc (in a mount
  // namespace of its own, which the others inherit) before it creates them.
  bool root_is_ns_init = false;
};

// The puppets once created, before anyone has taken them over: the root's PID as the creator
// sees it, and where each puppet reports (read ends, in plan order).
struct SpawnedPuppets {
  pid_t root = 0;
  std::vector<ScopedFd> reports;
};

// Owns the puppets: kills and reaps them unless released (when they have become the restored
// processes).
class PuppetTree {
 public:
  // Returns once every puppet has reported ready (each pauses, every signal blocked, until it is
  // seized).
  static Result<PuppetTree> create(const PuppetPlan& plan);
  // The two halves of create(), for a caller that takes the puppets over from another process
  // (one inside the PID namespace whose init the root is). spawn() leaves the root running
  // unwatched: on failure of what follows, the caller kills it (which ends all of them).
  static Result<SpawnedPuppets> spawn(const PuppetPlan& plan);
  static Result<PuppetTree> take_over(const PuppetPlan& plan, SpawnedPuppets spawned);
  PuppetTree(PuppetTree&& o) noexcept;
  PuppetTree& operator=(PuppetTree&&) = delete;
  ~PuppetTree();

  size_t size() const { return pids_.size(); }
  pid_t pid(size_t i) const { return pids_[i]; }
  // Attaches to puppet i and stops it, from the thread that is to build it (see TracerCrew).
  Status seize(size_t i);
  ptrace::Tracee& tracee(size_t i) { return tracees_[i]; }
  // Numbers of the plan's handed fds inside puppet i, in order.
  const std::vector<int>& handed_fds(size_t i) const { return kept_[i]; }
  void release() { pids_.clear(); }

 private:
  PuppetTree() = default;
  Status take_over_one(size_t i, const PuppetPlan& plan, int report_fd);

  std::vector<pid_t> pids_;
  std::vector<ptrace::Tracee> tracees_;
  std::vector<std::vector<int>> kept_;
};

// A page-sized hole for the restorer page: free in the image and in this process, whose
// mappings are `own` (read once for every process of a tree).
uint64_t choose_trampoline(const schema::ProcessRecord& proc,
                           const std::vector<proc::MapEntry>& own);

}  // namespace ckpt
