#include "resources/tree_plan.hpp"

#include <map>
#include <optional>
#include <set>

namespace ckpt::tree {
namespace {

using GroupPlan = GroupStep;
using SessionPlan = SessionStep;
using TreeRecord = TreePlan;

// Where a process is during the restore; 0 stands for the restorer's session or group.
struct Where {
  pid_t sid = 0, pgid = 0;
};

// Replays the restore: each process is created (through helpers if it needs them), creates its
// early children, takes its session and group, then creates its other children.
class Planner {
 public:
  Planner(const std::vector<TreeIds>& procs, const std::function<bool(pid_t)>& alive_outside)
      : procs_(procs),
        alive_outside_(alive_outside),
        out_(procs.size()),
        now_(procs.size()),
        created_(procs.size(), false),
        kids_(procs.size()) {
    for (size_t i = 0; i < procs.size(); ++i) index_[procs[i].pid] = i;
    for (size_t i = 1; i < procs.size(); ++i) {
      auto parent = index_.find(procs[i].ppid);
      if (parent != index_.end() && parent->second < i) kids_[parent->second].push_back(i);
    }
  }

  Result<std::vector<TreeRecord>> run() {
    for (size_t i = 1; i < procs_.size(); ++i) {
      auto parent = index_.find(procs_[i].ppid);
      if (parent == index_.end() || parent->second >= i)
        return errorf("pid {}: its parent {} is not among the dumped processes", procs_[i].pid,
                      procs_[i].ppid);
    }
    if (!procs_.empty()) CKPT_TRY(visit(0, Where{}));
    return out_;
  }

 private:
  Status visit(size_t i, Where w);
  Status take_session(size_t i, Where& w);
  Status take_group_helper(size_t i, Where& w);
  Status take_group(size_t i, Where& w);

  bool in_tree(pid_t id) const { return index_.count(id) != 0; }
  // The session of the group `pgid` if some process created so far is in it.
  std::optional<pid_t> group_session(pid_t pgid) const {
    for (size_t k = 0; k < procs_.size(); ++k)
      if (created_[k] && now_[k].pgid == pgid) return now_[k].sid;
    return std::nullopt;
  }
  // The number is in use as a PID, session or group ID: no helper can take it.
  bool held(pid_t id) const {
    if (in_tree(id) || helpers_.count(id) || foreign_.count(id)) return true;
    for (size_t k = 0; k < procs_.size(); ++k)
      if (created_[k] && (now_[k].sid == id || now_[k].pgid == id)) return true;
    return false;
  }
  std::string why_no_helper(pid_t id) const {
    if (in_tree(id)) return fmt::format("its leader {} is a dumped process", id);
    if (alive_outside_(id))
      return fmt::format("{} is in use outside the dumped processes (a PID, group or session)", id);
    return fmt::format("another dumped process is in it already");
  }

  const std::vector<TreeIds>& procs_;
  const std::function<bool(pid_t)>& alive_outside_;
  std::vector<TreeRecord> out_;
  std::vector<Where> now_;
  std::vector<bool> created_;
  std::vector<std::vector<size_t>> kids_;
  std::map<pid_t, size_t> index_;
  std::set<pid_t> helpers_;  // IDs a helper takes
  std::set<pid_t> foreign_;  // the original IDs of the restorer's session and group
};

Status Planner::take_session(size_t i, Where& w) {
  const TreeIds& me = procs_[i];
  if (me.sid == me.pid || me.sid == w.sid) return {};
  if (i == 0 && alive_outside_(me.sid)) {  // the root stays in the restorer's session
    foreign_.insert(me.sid);
    w.sid = me.sid;
    return {};
  }
  if (held(me.sid) || alive_outside_(me.sid))
    return errorf(
        "pid {}: it is in session {}, which neither it nor its parent leads, and ckpt cannot "
        "rebuild it: {}",
        me.pid, me.sid, why_no_helper(me.sid));
  out_[i].session = SessionPlan::helper;
  helpers_.insert(me.sid);
  w = {me.sid, me.sid};
  return {};
}

Status Planner::take_group_helper(size_t i, Where& w) {
  const TreeIds& me = procs_[i];
  pid_t g = me.pgid;
  if (me.sid == me.pid || g == w.pgid || g == me.pid || in_tree(g) || group_session(g)) return {};
  if (i == 0 && out_[0].session == SessionPlan::inherit && alive_outside_(g)) {
    // The root stays in the restorer's group.
    foreign_.insert(g);
    w.pgid = g;
    return {};
  }
  if (held(g) || alive_outside_(g))
    return errorf("pid {}: ckpt cannot rebuild its process group {}: {}", me.pid, g,
                  why_no_helper(g));
  out_[i].group = GroupPlan::helper;
  helpers_.insert(g);
  w.pgid = g;
  return {};
}

Status Planner::take_group(size_t i, Where& w) {
  const TreeIds& me = procs_[i];
  TreeRecord& t = out_[i];
  pid_t g = me.pgid;
  if (me.sid == me.pid) {
    if (g != me.pid) return errorf("pid {}: leads session {} but not its group", me.pid, me.sid);
    t.session = SessionPlan::lead;
    w = {me.pid, me.pid};
    return {};
  }
  if (t.group == GroupPlan::helper || g == w.pgid) return {};
  if (g == me.pid) {
    t.group = GroupPlan::lead;
    w.pgid = g;
    return {};
  }
  auto session = group_session(g);
  if (session && !foreign_.count(g)) {
    if (*session != w.sid)
      return errorf("pid {}: its process group {} is in another session at restore", me.pid, g);
    t.group = GroupPlan::join;
    t.leader = g;
    w.pgid = g;
    return {};
  }
  if (in_tree(g) && !created_[index_.at(g)] && !me.zombie) {
    t.group = GroupPlan::late;  // w stays: its children are created before it joins
    t.leader = g;
    return {};
  }
  return errorf(
      "pid {}: ckpt cannot rebuild its process group {}: {}", me.pid, g,
      me.zombie ? "it is a zombie whose group's leader is created after it" : why_no_helper(g));
}

Status Planner::visit(size_t i, Where w) {
  const TreeIds& me = procs_[i];
  out_[i].pgid = me.pgid;
  out_[i].sid = me.sid;
  CKPT_TRY(take_session(i, w));
  CKPT_TRY(take_group_helper(i, w));
  created_[i] = true;
  now_[i] = w;
  // A child still in the session this process leaves with setsid() was forked before it.
  std::vector<size_t> later;
  for (size_t k : kids_[i]) {
    // Session 0 is a real one: a program started by PID 1 (as in a VM or container) is in it.
    bool early = me.sid == me.pid && procs_[k].sid != procs_[k].pid && procs_[k].sid == w.sid;
    if (!early) {
      later.push_back(k);
      continue;
    }
    out_[k].early = true;
    CKPT_TRY(visit(k, w));
  }
  CKPT_TRY(take_group(i, w));
  now_[i] = w;
  for (size_t k : later) CKPT_TRY(visit(k, w));
  return {};
}

}  // namespace

Result<std::vector<TreePlan>> plan_tree(const std::vector<TreeIds>& procs,
                                        const std::function<bool(pid_t)>& alive_outside) {
  return Planner(procs, alive_outside).run();
}

}  // namespace ckpt::tree
