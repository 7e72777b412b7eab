#include "cli/command.hpp"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

namespace ckpt::cli {
namespace {

std::vector<CommandDef>& registry() {
  static std::vector<CommandDef> defs;
  return defs;
}

std::string& invocation_text() {
  static std::string text;
  return text;
}

}  // namespace

void register_command(CommandDef def) {
  auto& defs = registry();
  defs.push_back(std::move(def));
  std::stable_sort(defs.begin(), defs.end(),
                   [](const CommandDef& a, const CommandDef& b) { return a.order < b.order; });
}

const std::vector<CommandDef>& commands() {
  return registry();
}

void print_error(std::string_view message) {
  std::string line = fmt::format("ckpt: {}\n", message);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

const std::string& invocation() {
  return invocation_text();
}

void set_invocation(std::string text) {
  invocation_text() = std::move(text);
}

}  // namespace ckpt::cli
