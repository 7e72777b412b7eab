#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ckpt/version.hpp"
#include "cli/command.hpp"
#include "cli/options.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"

namespace ckpt::cli {

namespace {

struct LogArgs {
  std::string spec;
  int verbose = 0;
  int criu_level = -1;  // -vN, CRIU's 0 (nothing) to 4 (debug)
  std::string file;
  ScopedFd file_fd;
};

// CRIU's -v0 ... -v4 become the hidden --verbosity N, since CLI11 reads "-v4" as "-v -4".
std::vector<std::string> criu_verbosity(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args) {
    if (a == "--") break;
    if (a.size() == 3 && a.starts_with("-v") && a[2] >= '0' && a[2] <= '9')
      a = fmt::format("--verbosity={}", a[2]);
  }
  return args;
}

// Applied once the whole command line is parsed, before the subcommand runs. Throws CLI11's
// ValidationError so that a bad log setting is a usage error like any other.
void apply_log_args(LogArgs& a) {
  if (const char* env = std::getenv("CKPT_LOG")) {
    if (Status st = log::check_spec(env); !st.ok())
      throw CLI::ValidationError("$CKPT_LOG", st.error().message);
  }
  if (a.criu_level >= 0) {
    static constexpr const char* levels[] = {"off", "error", "warn", "info", "debug"};
    (void)log::configure(levels[std::min(a.criu_level, 4)]);
  }
  log::set_verbosity(a.verbose);
  if (!a.spec.empty()) {
    if (Status st = log::configure(a.spec); !st.ok())
      throw CLI::ValidationError("--log", st.error().message);
  }
  if (!a.file.empty()) {
    auto fd = open_file(a.file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (!fd.ok()) throw CLI::ValidationError("--log-file", fd.error().message);
    a.file_fd = std::move(*fd);
    log::set_output(a.file_fd.get());
  }
}

void add_log_options(CLI::App& app, LogArgs& a) {
  app.add_option("--log", a.spec,
                 "Log levels: LEVEL or MODULE=LEVEL, comma-separated, e.g. 'info,ptrace=debug' "
                 "(also from $CKPT_LOG; levels debug, info, warn, error, off)")
      ->check(non_empty());
  app.add_flag("-v,--verbose", a.verbose, "More log lines: -v info, -vv debug");
  app.add_option("--verbosity", a.criu_level, "CRIU's -vN")->check(CLI::Range(0, 9))->group("");
  app.add_option("-o,--log-file", a.file,
                 "Write log lines to FILE instead of stderr (created 0600, truncated)")
      ->check(non_empty());
}

// One line for every usage error: what is wrong and where to look.
std::string usage_line(const CLI::App* app, const CLI::Error& e) {
  std::string where = "ckpt";
  for (const CLI::App* sub : app->get_subcommands()) where += " " + sub->get_name();
  std::string what = e.what();
  std::replace(what.begin(), what.end(), '\n', ' ');
  return fmt::format("ckpt: {} (see '{} --help')\n", what, where);
}

int run(int argc, char** argv) {
  std::vector<std::string_view> words(argv, argv + argc);
  set_invocation(fmt::format("{}", fmt::join(words, " ")));
  CLI::App app{"ckpt: checkpoint/restore and crash recovery for Linux processes", "ckpt"};
  app.set_version_flag("-V,--version", "ckpt " CKPT_VERSION_STRING);
  app.require_subcommand(1);
  app.fallthrough();  // -v, -o and --log also after the subcommand, as CRIU takes them
  app.failure_message(usage_line);
  app.footer(
      "Exit codes: 0 success, 1 the operation failed, 2 wrong usage.\n"
      "Run 'ckpt COMMAND --help' for the options of a command; 'man ckpt' for more.");
  LogArgs log_args;
  add_log_options(app, log_args);
  app.parse_complete_callback([&] { apply_log_args(log_args); });

  int exit_code = kExitOk;
  for (auto& def : commands()) def.add(app, &exit_code);

  auto args = criu_verbosity(argc, argv);
  std::reverse(args.begin(), args.end());
  args.pop_back();  // the program name; CLI11 takes the rest in reverse order
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  } catch (const std::exception& e) {
    // The last guard of "bad input never aborts": a library call that throws is one line too.
    print_error(fmt::format("internal error: {}", e.what()));
    return kExitFailed;
  }
  return exit_code;
}

}  // namespace
}  // namespace ckpt::cli

int main(int argc, char** argv) {
  return ckpt::cli::run(argc, argv);
}
