#include "cli/options.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace ckpt::cli {
namespace {

// The kernel's PID_MAX_LIMIT on 64-bit machines.
constexpr pid_t kPidMax = 1 << 22;

bool all_digits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// "pipe:[123]" -> ("pipe", true); a key of that shape with a bad inode -> an error.
Result<std::string_view> inode_key_kind(std::string_view key) {
  for (std::string_view kind : {"pipe", "socket"}) {
    if (!key.starts_with(kind) || key.size() == kind.size() || key[kind.size()] != ':') continue;
    auto rest = key.substr(kind.size() + 1);
    uint64_t inode = 0;
    bool ok = rest.size() > 2 && rest.front() == '[' && rest.back() == ']';
    if (ok) {
      auto num = rest.substr(1, rest.size() - 2);
      auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), inode);
      ok = all_digits(num) && ec == std::errc() && end == num.data() + num.size();
    }
    if (!ok) return errorf("'{}': expected {}:[INODE] with INODE a decimal number", key, kind);
    return kind;
  }
  return std::string_view{};
}

}  // namespace

CLI::Validator finite_range(double lo, double hi) {
  std::string desc = fmt::format("in [{} - {}]", lo, hi);
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size())
          return fmt::format("'{}' is not a number", text);
        if (!std::isfinite(v) || errno == ERANGE || v < lo || v > hi)
          return fmt::format("{} is not a number from {} to {}", text, lo, hi);
        return {};
      },
      desc, "FINITE");
}

CLI::Validator non_empty() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return text.empty() ? std::string("must not be empty") : std::string();
      },
      "not empty", "NON_EMPTY");
}

std::optional<pid_t> parse_pid(std::string_view text) {
  if (!all_digits(text)) return std::nullopt;
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (ec != std::errc() || end != text.data() + text.size() || pid <= 0 || pid > kPidMax)
    return std::nullopt;
  return pid;
}

Result<InheritFd> parse_inherit_fd(std::string_view text) {
  constexpr std::string_view kSyntax = "expected fd[N]:KEY, e.g. fd[7]:pipe:[12345]";
  if (!text.starts_with("fd[")) return errorf("--inherit-fd '{}': {}", text, kSyntax);
  auto close = text.find("]:");
  if (close == std::string_view::npos) return errorf("--inherit-fd '{}': {}", text, kSyntax);
  auto num = text.substr(3, close - 3);
  InheritFd out;
  auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), out.fd);
  if (!all_digits(num) || ec != std::errc() || end != num.data() + num.size())
    return errorf("--inherit-fd '{}': '{}' is not a descriptor number", text, num);
  out.key = std::string(text.substr(close + 2));
  if (out.key.empty()) return errorf("--inherit-fd '{}': the KEY after ':' is empty", text);
  auto kind = inode_key_kind(out.key);
  if (!kind.ok()) return kind.error().wrap(fmt::format("--inherit-fd '{}'", text));
  return out;
}

Status check_inherit_fd(const InheritFd& f) {
  struct stat st;
  if (::fcntl(f.fd, F_GETFD) < 0 || ::fstat(f.fd, &st) < 0)
    return errorf("--inherit-fd fd[{}]:{}: fd {} is not open in ckpt", f.fd, f.key, f.fd);
  auto kind = inode_key_kind(f.key);
  if (!kind.ok()) return kind.error();
  if (*kind == "pipe" && !S_ISFIFO(st.st_mode))
    return errorf("--inherit-fd fd[{}]:{}: fd {} is not a pipe", f.fd, f.key, f.fd);
  if (*kind == "socket" && !S_ISSOCK(st.st_mode))
    return errorf("--inherit-fd fd[{}]:{}: fd {} is not a socket", f.fd, f.key, f.fd);
  return {};
}

}  // namespace ckpt::cli
