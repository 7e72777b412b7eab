#include "common/log.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ckpt::log {
namespace {

constexpr std::string_view kModules[] = {
    "app",     "cli",      "deleted_files", "dump",     "fds",           "files",   "image",
    "lazy",    "locks",    "memory",        "proc",     "process",       "ptrace",  "puppet",
    "restore", "rollback", "seccomp",       "settings", "shared_memory", "signals", "supervisor",
    "threads", "timers",   "tree",          "vdso"};

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "off"};

struct Config {
  std::mutex mu;
  Level fallback = Level::warn;
  std::map<std::string, Level, std::less<>> per_module;
  int out_fd = -1;  // -1: stderr
  int capture_fd = -1;
  Level capture_level = Level::debug;
  bool from_env_done = false;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

Config& config() {
  static Config c;
  return c;
}

bool parse_level(std::string_view s, Level* out) {
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (s == kLevelNames[i]) {
      *out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

struct Item {
  std::string_view module;  // empty: the default level
  Level level = Level::warn;
};

Result<Item> parse_item(std::string_view item) {
  Item out;
  auto eq = item.find('=');
  std::string_view level = eq == std::string_view::npos ? item : item.substr(eq + 1);
  if (eq != std::string_view::npos) {
    out.module = item.substr(0, eq);
    auto known = known_modules();
    if (std::find(known.begin(), known.end(), out.module) == known.end())
      return errorf("log spec item '{}': unknown module '{}' (modules: {})", item, out.module,
                    fmt::join(known, ", "));
  }
  if (!parse_level(level, &out.level))
    return errorf("log spec item '{}': unknown level '{}' (levels: {})", item, level,
                  fmt::join(kLevelNames, ", "));
  return out;
}

Result<std::vector<Item>> parse_spec(std::string_view spec) {
  std::vector<Item> items;
  if (spec.empty()) return errorf("log spec is empty (levels: {})", fmt::join(kLevelNames, ", "));
  while (true) {
    auto comma = spec.find(',');
    CKPT_TRY_ASSIGN(Item item, parse_item(spec.substr(0, comma)));
    items.push_back(item);
    if (comma == std::string_view::npos) break;
    spec = spec.substr(comma + 1);
  }
  return items;
}

void apply_items(Config& c, const std::vector<Item>& items) {
  for (auto& item : items) {
    if (item.module.empty())
      c.fallback = item.level;
    else
      c.per_module[std::string(item.module)] = item.level;
  }
}

// A wrong $CKPT_LOG in a program using the library is not the program's failure: it is said
// once and ignored. The command line checks it first and refuses it.
void load_env_once(Config& c) {
  if (c.from_env_done) return;
  c.from_env_done = true;
  const char* env = std::getenv("CKPT_LOG");
  if (!env) return;
  auto items = parse_spec(env);
  if (items.ok()) {
    apply_items(c, *items);
  } else {
    std::string line = fmt::format("ckpt: $CKPT_LOG ignored: {}\n", items.error().message);
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  }
}

Level stream_level(const Config& c, std::string_view module) {
  auto it = c.per_module.find(module);
  return it == c.per_module.end() ? c.fallback : it->second;
}

}  // namespace

std::span<const std::string_view> known_modules() {
  return kModules;
}

Status check_spec(std::string_view spec) {
  auto items = parse_spec(spec);
  if (!items.ok()) return items.error();
  return {};
}

Status configure(std::string_view spec) {
  CKPT_TRY_ASSIGN(auto items, parse_spec(spec));
  auto& c = config();
  std::lock_guard lock(c.mu);
  load_env_once(c);
  apply_items(c, items);
  return {};
}

void set_verbosity(int count) {
  if (count <= 0) return;
  auto& c = config();
  std::lock_guard lock(c.mu);
  load_env_once(c);
  c.fallback = std::min(c.fallback, count == 1 ? Level::info : Level::debug);
}

void set_output(int fd) {
  auto& c = config();
  std::lock_guard lock(c.mu);
  c.out_fd = fd;
}

void set_capture(int fd, Level level) {
  auto& c = config();
  std::lock_guard lock(c.mu);
  c.capture_fd = fd;
  c.capture_level = level;
}

bool enabled(std::string_view module, Level level) {
  if (level == Level::off) return false;
  auto& c = config();
  std::lock_guard lock(c.mu);
  load_env_once(c);
  if (c.capture_fd >= 0 && level >= c.capture_level) return true;
  return level >= stream_level(c, module);
}

std::string format_line(std::string_view module, Level level, std::string_view text) {
  // The first call constructs the config, which takes its start time then: read it before
  // now(), or the two operands' unspecified order can print a negative time.
  auto start = config().start;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return fmt::format("ckpt[{}/{}] {:.6f} {} {}: {}\n", getpid(), (long)syscall(SYS_gettid), secs,
                     kLevelNames[static_cast<int>(level)], module, text);
}

void write(std::string_view module, Level level, std::string_view text) {
  std::string line = format_line(module, level, text);
  auto& c = config();
  std::lock_guard lock(c.mu);
  // One write per line keeps lines from concurrent processes whole (the files are O_APPEND).
  if (level >= stream_level(c, module)) {
    int fd = c.out_fd >= 0 ? c.out_fd : STDERR_FILENO;
    (void)!::write(fd, line.data(), line.size());
  }
  if (c.capture_fd >= 0 && level >= c.capture_level)
    (void)!::write(c.capture_fd, line.data(), line.size());
}

}  // namespace ckpt::log
