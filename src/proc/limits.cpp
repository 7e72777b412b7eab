#include "proc/limits.hpp"

#include <sys/resource.h>

#include <array>
#include <string>

#include "proc/proc_file.hpp"

namespace ckpt::proc {
namespace {

struct LimitName {
  std::string_view proc;  // as /proc/PID/limits prints it
  std::string_view id;
};

// In RLIMIT_* order, the kernel's own (fs/proc/base.c).
constexpr std::array<LimitName, RLIM_NLIMITS> kNames = {{
    {"Max cpu time", "RLIMIT_CPU"},
    {"Max file size", "RLIMIT_FSIZE"},
    {"Max data size", "RLIMIT_DATA"},
    {"Max stack size", "RLIMIT_STACK"},
    {"Max core file size", "RLIMIT_CORE"},
    {"Max resident set", "RLIMIT_RSS"},
    {"Max processes", "RLIMIT_NPROC"},
    {"Max open files", "RLIMIT_NOFILE"},
    {"Max locked memory", "RLIMIT_MEMLOCK"},
    {"Max address space", "RLIMIT_AS"},
    {"Max file locks", "RLIMIT_LOCKS"},
    {"Max pending signals", "RLIMIT_SIGPENDING"},
    {"Max msgqueue size", "RLIMIT_MSGQUEUE"},
    {"Max nice priority", "RLIMIT_NICE"},
    {"Max realtime priority", "RLIMIT_RTPRIO"},
    {"Max realtime timeout", "RLIMIT_RTTIME"},
}};

Result<uint64_t> parse_value(std::string_view word, std::string_view line) {
  if (word == "unlimited") return uint64_t{RLIM_INFINITY};
  auto v = parse_u64(word);
  if (!v) return errorf("/proc limits: bad value '{}' in line '{}'", word, line);
  return *v;
}

// The names hold spaces and the columns are padded: a line is known by its name, the two
// values are the first two words after it.
Status parse_line(std::string_view line, std::vector<Limit>& out, std::vector<bool>& seen) {
  for (size_t r = 0; r < kNames.size(); ++r) {
    std::string_view name = kNames[r].proc;
    if (line.substr(0, name.size()) != name) continue;
    std::string_view rest = line.substr(name.size());
    if (!rest.empty() && rest.front() != ' ') continue;  // a longer name with this prefix
    CKPT_TRY_ASSIGN(out[r].cur, parse_value(next_token(rest), line));
    CKPT_TRY_ASSIGN(out[r].max, parse_value(next_token(rest), line));
    if (seen[r]) return errorf("/proc limits: '{}' listed twice", name);
    seen[r] = true;
    return {};
  }
  return {};  // the header, or a limit newer than this ckpt
}

}  // namespace

Result<std::vector<Limit>> parse_limits(std::string_view text) {
  std::vector<Limit> out(kNames.size());
  std::vector<bool> seen(kNames.size());
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    CKPT_TRY(parse_line(line, out, seen));
  }
  for (size_t r = 0; r < seen.size(); ++r)
    if (!seen[r]) return errorf("/proc limits: no line for {}", kNames[r].id);
  return out;
}

Result<std::vector<Limit>> read_limits(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, "limits"));
  auto limits = parse_limits(text);
  if (!limits.ok()) return limits.error().wrap(fmt::format("pid {}", pid));
  return limits;
}

std::string rlimit_name(int resource) {
  if (resource >= 0 && resource < static_cast<int>(kNames.size()))
    return std::string(kNames[resource].id);
  return fmt::format("RLIMIT_{}", resource);
}

}  // namespace ckpt::proc
