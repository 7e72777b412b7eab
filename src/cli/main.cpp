#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "ckpt/version.hpp"
#include "cli/command.hpp"
#include "common/log.hpp"

namespace ckpt::cli {

static std::vector<CommandDef>& registry() {
  static std::vector<CommandDef> defs;
  return defs;
}

void register_command(CommandDef def) {
  registry().push_back(std::move(def));
}

void print_error(std::string_view message) {
  std::string line = fmt::format("ckpt: {}\n", message);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

static int run(int argc, char** argv) {
  CLI::App app{"ckpt: checkpoint/restore and crash recovery for Linux processes", "ckpt"};
  app.set_version_flag("-V,--version", "ckpt " CKPT_VERSION_STRING);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 the operation failed, 2 wrong usage.\n"
      "Run 'ckpt COMMAND --help' for the options of a command.");
  std::string log_spec;
  app.add_option("--log", log_spec,
                 "Log levels, e.g. 'info' or 'restore=debug' (also from $CKPT_LOG)");
  app.parse_complete_callback([&] {
    if (!log_spec.empty()) log::configure(log_spec);
  });

  int exit_code = kExitOk;
  auto& defs = registry();
  std::sort(defs.begin(), defs.end(), [](auto& a, auto& b) { return a.order < b.order; });
  for (auto& def : defs) def.add(app, &exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}

}  // namespace ckpt::cli

int main(int argc, char** argv) {
  return ckpt::cli::run(argc, argv);
}
