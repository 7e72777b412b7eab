#pragma once
// Logging to stderr with a level per module. Levels come from the CKPT_LOG environment variable
// ("debug", or "ptrace=debug,image=info") or from the command line (--log). Every line carries
// the pid and tid of the writer, because dump and restore span several processes.
#include <string_view>

#include <fmt/format.h>

namespace ckpt::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// Parses a spec such as "warn" or "restore=debug,memory=info"; unknown words are ignored.
void configure(std::string_view spec);
bool enabled(std::string_view module, Level level);
void write(std::string_view module, Level level, std::string_view text);

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
