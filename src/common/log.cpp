#include "common/log.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace ckpt::log {
namespace {

struct Config {
  std::mutex mu;
  Level fallback = Level::warn;
  std::map<std::string, Level, std::less<>> per_module;
  bool from_env_done = false;
};

Config& config() {
  static Config c;
  return c;
}

bool parse_level(std::string_view s, Level* out) {
  static const std::pair<std::string_view, Level> names[] = {{"debug", Level::debug},
                                                             {"info", Level::info},
                                                             {"warn", Level::warn},
                                                             {"error", Level::error},
                                                             {"off", Level::off}};
  for (auto& [name, level] : names) {
    if (s == name) {
      *out = level;
      return true;
    }
  }
  return false;
}

void apply(Config& c, std::string_view spec) {
  while (!spec.empty()) {
    auto comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    Level level;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      if (parse_level(item, &level)) c.fallback = level;
    } else if (parse_level(item.substr(eq + 1), &level)) {
      c.per_module[std::string(item.substr(0, eq))] = level;
    }
  }
}

void load_env_once(Config& c) {
  if (c.from_env_done) return;
  c.from_env_done = true;
  if (const char* env = std::getenv("CKPT_LOG")) apply(c, env);
}

}  // namespace

void configure(std::string_view spec) {
  auto& c = config();
  std::lock_guard lock(c.mu);
  load_env_once(c);
  apply(c, spec);
}

bool enabled(std::string_view module, Level level) {
  auto& c = config();
  std::lock_guard lock(c.mu);
  load_env_once(c);
  auto it = c.per_module.find(module);
  Level min = it == c.per_module.end() ? c.fallback : it->second;
  return level >= min && level != Level::off;
}

void write(std::string_view module, Level level, std::string_view text) {
  static constexpr const char* names[] = {"debug", "info", "warn", "error", "off"};
  std::string line = fmt::format("ckpt[{}/{}] {} {}: {}\n", getpid(), (long)syscall(SYS_gettid),
                                 names[static_cast<int>(level)], module, text);
  // One write per line keeps lines from concurrent processes whole.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace ckpt::log
