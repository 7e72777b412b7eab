#pragma once
// Logging with a level per module. Every line carries the pid and tid of the writer and the
// seconds since the log was set up, because dump and restore span several processes (forked
// ones inherit the setup and so share the time line).
//
// Where lines go: to stderr, or to a file instead (-o/--log-file); in addition, a "kept log"
// (set_capture) receives every line at its own level whatever the others say: the command line
// uses it to keep the log of a failed dump or restore in the store (docs/logging.md).
//
// Levels come from, in order: the default (warn), $CKPT_LOG, -v (set_verbosity), --log. A spec
// is a comma list of LEVEL (the default for all modules) and MODULE=LEVEL items, e.g.
// "info,ptrace=debug".
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "common/result.hpp"

namespace ckpt::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// The modules a spec may name. A log call may use another name: it then follows the default
// level. A module that wants a level of its own is added here (log.cpp).
std::span<const std::string_view> known_modules();

// Checks a spec without applying it; the error says which item is wrong and what is allowed.
Status check_spec(std::string_view spec);
// Checks and applies a spec (nothing is applied when it is wrong).
Status configure(std::string_view spec);
// -v given `count` times: 0 leaves the default, 1 info, 2 or more debug for every module.
// Module levels set by a spec stay.
void set_verbosity(int count);
// Log lines go to `fd` (a file the caller keeps open) instead of stderr; -1 goes back to stderr.
void set_output(int fd);
// Every line at `level` or above is also written to `fd`; -1 stops. The fd is the caller's.
void set_capture(int fd, Level level = Level::debug);

bool enabled(std::string_view module, Level level);
void write(std::string_view module, Level level, std::string_view text);
// The line as written: "ckpt[PID/TID] SECONDS LEVEL MODULE: TEXT\n".
std::string format_line(std::string_view module, Level level, std::string_view text);

template <typename... Args>
void at(Level level, std::string_view module, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(module, level)) write(module, level, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void debug(std::string_view module, fmt::format_string<Args...> f, Args&&... args) {
  at(Level::debug, module, f, std::forward<Args>(args)...);
}
template <typename... Args>
void info(std::string_view module, fmt::format_string<Args...> f, Args&&... args) {
  at(Level::info, module, f, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(std::string_view module, fmt::format_string<Args...> f, Args&&... args) {
  at(Level::warn, module, f, std::forward<Args>(args)...);
}
template <typename... Args>
void error(std::string_view module, fmt::format_string<Args...> f, Args&&... args) {
  at(Level::error, module, f, std::forward<Args>(args)...);
}

}  // namespace ckpt::log
