#include "proc/task.hpp"

#include <dirent.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "proc/proc_file.hpp"
#include "proc/stat.hpp"

namespace ckpt::proc {

Result<std::vector<pid_t>> list_threads(pid_t pid) {
  CKPT_TRY_ASSIGN(auto tids, list_numeric_dir(pid, "task"));
  return std::vector<pid_t>(tids.begin(), tids.end());
}

Result<std::vector<pid_t>> parse_pid_list(std::string_view text) {
  std::vector<pid_t> out;
  for (std::string_view tok = next_token(text); !tok.empty(); tok = next_token(text)) {
    auto v = parse_u64(tok);
    if (!v || *v == 0 || *v > INT32_MAX) return errorf("bad pid '{}'", tok);
    out.push_back(static_cast<pid_t>(*v));
  }
  return out;
}

Result<std::vector<pid_t>> list_children(pid_t pid) {
  CKPT_TRY_ASSIGN(auto tids, list_threads(pid));
  std::vector<pid_t> out;
  for (pid_t tid : tids) {
    std::string rel = fmt::format("task/{}/children", tid);
    auto text = read_proc_file(pid, rel);
    if (!text) {
      // A thread that exited since the listing has no children left to report.
      if (text.error().errnum == ENOENT && tid != pid) continue;
      if (text.error().errnum == ENOENT) return list_children_by_scan(pid);
      return text.error();
    }
    auto pids = parse_pid_list(*text);
    if (!pids) return parse_error(pid, rel, pids.error());
    out.insert(out.end(), pids->begin(), pids->end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<std::vector<pid_t>> list_pids() {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc"), ::closedir);
  if (!dir) return sys_error("list /proc");
  std::vector<pid_t> out;
  while (dirent* e = ::readdir(dir.get())) {
    auto v = parse_u64(e->d_name);
    if (v && *v <= INT32_MAX) out.push_back(static_cast<pid_t>(*v));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<pid_t>> list_children_by_scan(pid_t pid) {
  CKPT_TRY_ASSIGN(std::vector<pid_t> pids, list_pids());
  std::vector<pid_t> out;
  for (pid_t p : pids) {
    auto st = read_stat(p);
    if (!st) continue;  // exited during the scan, or a kernel thread we may not read
    if (st->ppid == pid) out.push_back(st->pid);
  }
  return out;
}

}  // namespace ckpt::proc
