#pragma once
// /proc/PID/status and /proc/PID/task/TID/status. Unknown keys are ignored; keys missing from
// the text keep their defaults (older kernels lack some, e.g. NSpid or Seccomp_filters).
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::proc {

struct ProcStatus {
  std::string name;  // unescaped
  char state = '?';
  pid_t tgid = 0;
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t tracer_pid = 0;
  std::array<uint32_t, 4> uid{};  // real, effective, saved, filesystem
  std::array<uint32_t, 4> gid{};
  std::vector<uint32_t> groups;
  std::vector<pid_t> ns_tgid;  // outermost namespace first
  std::vector<pid_t> ns_pid;
  std::vector<pid_t> ns_pgid;
  std::vector<pid_t> ns_sid;
  int threads = 0;
  uint64_t vm_lck_kb = 0;    // memory locked by mlock(): VM_LOCKED areas, counted by the kernel
  uint64_t rss_anon_kb = 0;  // resident anonymous pages (private ones written, and their copies)
  uint64_t vm_swap_kb = 0;   // anonymous pages swapped out
  uint64_t sigq_queued = 0;
  uint64_t sigq_limit = 0;
  uint64_t sig_pnd = 0;  // thread-private pending
  uint64_t shd_pnd = 0;  // process-shared pending
  uint64_t sig_blk = 0;
  uint64_t sig_ign = 0;
  uint64_t sig_cgt = 0;
  uint64_t cap_inh = 0;
  uint64_t cap_prm = 0;
  uint64_t cap_eff = 0;
  uint64_t cap_bnd = 0;
  uint64_t cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;  // 0 off, 1 strict, 2 filter
  int seccomp_filters = 0;
  std::optional<uint32_t> umask;
  std::string speculation_store_bypass;
  std::string speculation_indirect_branch;
};

Result<ProcStatus> parse_status(std::string_view text);
Result<ProcStatus> read_status(pid_t pid);
Result<ProcStatus> read_thread_status(pid_t pid, pid_t tid);

// Undoes the kernel's escaping of task names ("\n" -> newline, "\\" -> backslash, octal).
std::string unescape_name(std::string_view s);

}  // namespace ckpt::proc
