#pragma once
// The `ckpt` command is a set of subcommands, each defined in its own cmd_*.cpp file that
// registers itself here. main.cpp only parses and dispatches.
//
// Exit codes, the same for every subcommand: 0 success, 1 the operation failed, 2 wrong usage.
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace ckpt::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// `add` creates the subcommand on `app` and sets its callback; the callback stores the
// subcommand's exit code in *exit_code.
struct CommandDef {
  int order;  // position in --help
  std::function<void(CLI::App& app, int* exit_code)> add;
};

void register_command(CommandDef def);
// Every registered command, in --help order.
const std::vector<CommandDef>& commands();

struct CommandRegistrar {
  explicit CommandRegistrar(CommandDef def) { register_command(std::move(def)); }
};

// Prints "ckpt: <message>" to stderr; the one-line error style of every command.
void print_error(std::string_view message);

// The command line as it was typed (the first line of a kept log).
const std::string& invocation();
void set_invocation(std::string text);

}  // namespace ckpt::cli
