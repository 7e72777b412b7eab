#include "proc/mountinfo.hpp"

#include "proc/proc_file.hpp"

namespace ckpt::proc {
namespace {

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      auto code = parse_u64(s.substr(i + 1, 3), 8);
      if (code && *code < 256) {
        out.push_back(static_cast<char>(*code));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

Result<Mount> parse_line(std::string_view line) {
  // "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw"
  Mount m;
  auto id = parse_u64(next_token(line));
  next_token(line);  // parent id
  std::string_view dev = next_token(line);
  std::string_view root = next_token(line);
  std::string_view point = next_token(line);
  size_t colon = dev.find(':');
  if (!id || colon == std::string_view::npos || point.empty())
    return errorf("malformed mount line");
  auto major = parse_u64(dev.substr(0, colon));
  auto minor = parse_u64(dev.substr(colon + 1));
  if (!major || !minor) return errorf("malformed device {}", dev);
  m.id = static_cast<int>(*id);
  m.major = static_cast<unsigned>(*major);
  m.minor = static_cast<unsigned>(*minor);
  m.root = unescape(root);
  m.mount_point = unescape(point);
  return m;
}

}  // namespace

Result<std::vector<Mount>> parse_mountinfo(std::string_view text) {
  std::vector<Mount> out;
  std::string_view line;
  for (int n = 1; next_line(text, line); ++n) {
    if (trim(line).empty()) continue;
    auto m = parse_line(line);
    if (!m) return m.error().wrap(fmt::format("line {}", n));
    out.push_back(std::move(*m));
  }
  return out;
}

Result<std::vector<Mount>> read_mountinfo(pid_t pid) {
  CKPT_TRY_ASSIGN(std::string text, read_proc_file(pid, "mountinfo"));
  auto mounts = parse_mountinfo(text);
  if (!mounts) return parse_error(pid, "mountinfo", mounts.error());
  return mounts;
}

}  // namespace ckpt::proc
