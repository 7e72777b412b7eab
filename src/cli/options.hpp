#pragma once
// Checks of command-line values shared by the subcommands: every number is checked for range
// and finiteness (NaN and 1e308 are refused, not turned into 0 or an overflow), every path for
// being non-empty, and CRIU's --inherit-fd spelling is parsed here.
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "common/result.hpp"
#include "restore/restore.hpp"

namespace ckpt::cli {

// Seconds accepted by --interval, --min-uptime, --timeout: far beyond any use, far below
// where a conversion to timespec or a deadline overflows.
inline constexpr double kMaxSeconds = 1e9;

// A finite number in [lo, hi]; the message names the range.
CLI::Validator finite_range(double lo, double hi);
// A value that must not be empty (a path: '' would mean the current directory).
CLI::Validator non_empty();

// A PID written in decimal, 1 to the kernel's maximum (2^22); nullopt for anything else.
std::optional<pid_t> parse_pid(std::string_view text);

// CRIU's "fd[N]:KEY" with N a descriptor number and KEY "pipe:[INODE]", "socket:[INODE]" or a
// file path. Only the syntax is checked here.
Result<InheritFd> parse_inherit_fd(std::string_view text);
// Checks that the fd is open in this process and, for a pipe or socket key, of that kind.
Status check_inherit_fd(const InheritFd& f);

}  // namespace ckpt::cli
