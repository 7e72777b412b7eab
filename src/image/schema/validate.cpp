#include "image/schema/validate.hpp"

#include <sys/resource.h>

#include <map>
#include <set>

namespace ckpt::schema {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kMaxSignal = 64;
// Far above any real process, far below what would make restore allocate without bound.
constexpr size_t kMaxXstate = 1 << 20;
// Mask words: 8192 CPUs, 1024 NUMA nodes (the kernel's own maxima).
constexpr size_t kMaxAffinityWords = 128;
constexpr size_t kMaxNodeWords = 16;

Status check_settings(const ThreadSettings& s, const std::string& at) {
  if (s.affinity.size() > kMaxAffinityWords)
    return errorf("{}/settings/affinity: {} mask words", at, s.affinity.size());
  if (s.mempolicy && s.mempolicy->nodes.size() > kMaxNodeWords)
    return errorf("{}/settings/mempolicy: {} node mask words", at, s.mempolicy->nodes.size());
  if (s.nice && (*s.nice < -20 || *s.nice > 19))
    return errorf("{}/settings/nice: {} is not a nice value", at, *s.nice);
  if (s.pdeathsig && (*s.pdeathsig < 0 || *s.pdeathsig > kMaxSignal))
    return errorf("{}/settings/pdeathsig: signal {} does not exist", at, *s.pdeathsig);
  return {};
}

Status check_tree(const ImageRoot& image) {
  std::map<int32_t, size_t> index;  // pid -> position
  for (size_t i = 0; i < image.processes.size(); ++i) {
    const ProcessRecord& p = image.processes[i];
    std::string at = fmt::format("/processes/{}", i);
    if (p.pid <= 0) return errorf("{}: pid {} is not a process id", at, p.pid);
    if (!index.emplace(p.pid, i).second) return errorf("{}: pid {} is listed twice", at, p.pid);
    if (i == 0) {
      if (p.pid != image.root_pid)
        return errorf("{}: the first process {} is not the root {}", at, p.pid, image.root_pid);
      continue;
    }
    if (!index.count(p.tree.ppid) || index[p.tree.ppid] >= i)
      return errorf("{}: process {} comes before its parent {}", at, p.pid, p.tree.ppid);
    if (p.tree.group == GroupPlan::join &&
        (!index.count(p.tree.leader) || index[p.tree.leader] >= i))
      return errorf("{}: process {} joins group {}, not led by a process created before it", at,
                    p.pid, p.tree.leader);
  }
  return {};
}

Status check_threads(const ProcessRecord& p, const std::string& at,
                     const std::set<int32_t>& filters) {
  if (p.threads.empty()) return errorf("{}/threads: none", at);
  if (p.threads[0].tid != p.pid)
    return errorf("{}/threads/0: the main thread is {}, not {}", at, p.threads[0].tid, p.pid);
  std::set<int32_t> tids;
  for (size_t i = 0; i < p.threads.size(); ++i) {
    const ThreadRecord& t = p.threads[i];
    if (t.tid <= 0 || !tids.insert(t.tid).second)
      return errorf("{}/threads/{}: thread id {} is invalid or listed twice", at, i, t.tid);
    if (t.xstate.size() > kMaxXstate)
      return errorf("{}/threads/{}/xstate: {} bytes", at, i, t.xstate.size());
    if (t.seccomp_filter >= 0 && !filters.count(t.seccomp_filter))
      return errorf("{}/threads/{}: seccomp filter {} is not in the image", at, i,
                    t.seccomp_filter);
    CKPT_TRY(check_settings(t.settings, fmt::format("{}/threads/{}", at, i)));
  }
  return {};
}

// Sorted, page-aligned, not overlapping ranges inside `v`.
Status check_ranges(const Vma& v, const std::vector<Range>& ranges, const std::string& at) {
  uint64_t last = v.start;
  for (auto& r : ranges) {
    if (r.start < last || r.end <= r.start || r.end > v.end || r.start % kPage || r.end % kPage)
      return errorf("{}: {:#x}-{:#x} is out of order or outside the mapping", at, r.start, r.end);
    last = r.end;
  }
  return {};
}

Status check_vma(const Vma& v, const std::string& at, size_t shm_objects) {
  if (v.end <= v.start || v.start % kPage || v.end % kPage)
    return errorf("{}: {:#x}-{:#x} is not a page-aligned range", at, v.start, v.end);
  CKPT_TRY(check_ranges(v, v.pages, at + "/pages"));
  CKPT_TRY(check_ranges(v, v.from_root, at + "/from_root"));
  if (v.shm && (*v.shm < 0 || static_cast<size_t>(*v.shm) >= shm_objects))
    return errorf("{}: shared memory object {} is not in the image", at, *v.shm);
  return {};
}

Status check_memory(const ProcessRecord& p, const std::string& at, size_t shm_objects) {
  uint64_t last = 0;
  for (size_t i = 0; i < p.memory.vmas.size(); ++i) {
    const Vma& v = p.memory.vmas[i];
    std::string where = fmt::format("{}/memory/vmas/{}", at, i);
    CKPT_TRY(check_vma(v, where, shm_objects));
    if (v.start < last) return errorf("{}: overlaps the mapping before it", where);
    last = v.end;
  }
  return {};
}

Status check_process(const ImageRoot& image, const ProcessRecord& p, size_t i) {
  std::string at = fmt::format("/processes/{}", i);
  if (p.zombie) return {};
  std::set<int32_t> filters;
  for (auto& f : p.seccomp_filters) filters.insert(f.id);
  for (auto& f : p.seccomp_filters)
    if (f.parent >= 0 && !filters.count(f.parent))
      return errorf("{}/seccomp_filters: filter {} has no parent {}", at, f.id, f.parent);
  CKPT_TRY(check_threads(p, at, filters));
  CKPT_TRY(check_memory(p, at, image.shm_objects.size()));
  if (i == 0)
    for (auto& v : p.memory.vmas)
      if (!v.from_root.empty())
        return errorf("{}/memory: the root has pages saved as the root's own", at);
  if (p.task.rlimits.size() > RLIM_NLIMITS)
    return errorf("{}/task/rlimits: {} limits", at, p.task.rlimits.size());
  for (auto& a : p.signals.actions)
    if (a.signo < 1 || a.signo > kMaxSignal)
      return errorf("{}/signals: signal {} does not exist", at, a.signo);
  std::set<int32_t> numbers;
  for (auto& f : p.fds) {
    if (f.fd < 0 || !numbers.insert(f.fd).second)
      return errorf("{}/fds: fd {} is negative or listed twice", at, f.fd);
    if (f.open_file >= image.open_files.size())
      return errorf("{}/fds: fd {} refers to open file {}, not in the image", at, f.fd,
                    f.open_file);
  }
  for (auto& l : p.locks)
    if (l.kind != LockKind::posix || !l.fd || !numbers.count(*l.fd))
      return errorf(
          "{}/locks: a lock of kind {} on fd {}, which is not a POSIX lock on one of "
          "its fds",
          at, EnumNames<LockKind>::names[static_cast<size_t>(l.kind)], l.fd.value_or(-1));
  return {};
}

// Locks are taken again only on files opened by path or recreated; a range ends after it starts.
Status check_locks(const OpenFile& of) {
  for (auto& l : of.locks) {
    if (l.kind == LockKind::posix || (of.kind != "file" && of.kind != "deleted"))
      return errorf("/open_files/{}/locks: a {} lock on a {}", of.id,
                    EnumNames<LockKind>::names[static_cast<size_t>(l.kind)], of.kind);
    if (l.end && *l.end < l.start)
      return errorf("/open_files/{}/locks: range {}-{}", of.id, l.start, *l.end);
  }
  return {};
}

Status check_tree_wide(const ImageRoot& image) {
  for (size_t i = 0; i < image.open_files.size(); ++i) {
    if (image.open_files[i].id != i)
      return errorf("/open_files/{}: its id is {}", i, image.open_files[i].id);
    CKPT_TRY(check_locks(image.open_files[i]));
  }
  for (size_t i = 0; i < image.shm_objects.size(); ++i) {
    const ShmObject& o = image.shm_objects[i];
    if (o.id != static_cast<int32_t>(i)) return errorf("/shm_objects/{}: its id is {}", i, o.id);
    for (auto& r : o.data)
      if (r.end < r.start || r.end > o.size)
        return errorf("/shm_objects/{}: data {}-{} outside its {} bytes", i, r.start, r.end,
                      o.size);
  }
  std::set<int32_t> deleted;
  for (auto& d : image.deleted_files)
    if (!deleted.insert(d.id).second) return errorf("/deleted_files: id {} twice", d.id);
  auto check_deleted = [&](std::optional<int32_t> id, size_t i, std::string_view what) -> Status {
    if (id && !deleted.count(*id))
      return errorf("/processes/{}: {} names deleted file {}, which the image has not", i, what,
                    *id);
    return {};
  };
  for (size_t i = 0; i < image.processes.size(); ++i) {
    const TaskRecord& t = image.processes[i].task;
    CKPT_TRY(check_deleted(t.cwd_deleted, i, "cwd_deleted"));
    CKPT_TRY(check_deleted(t.exe_deleted, i, "exe_deleted"));
    for (auto& v : image.processes[i].memory.vmas)
      CKPT_TRY(check_deleted(v.deleted_file, i, "a mapping"));
  }
  return {};
}

}  // namespace

Status validate(const ImageRoot& image) {
  if (image.processes.empty()) return make_error("/processes: none");
  CKPT_TRY(check_tree(image));
  CKPT_TRY(check_tree_wide(image));
  for (size_t i = 0; i < image.processes.size(); ++i)
    CKPT_TRY(check_process(image, image.processes[i], i));
  return {};
}

}  // namespace ckpt::schema
