// Bad command-line input never aborts: every numeric option of every subcommand (found in its
// --help, so that a new option is covered without editing this test), fed NaN, infinities,
// negative, huge, 300-digit, non-numeric and empty values, ends with exit 1 or 2 and one line
// on stderr. Likewise the PID-or-directory arguments, empty paths, and log settings.
#include <sys/stat.h>

#include <map>
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "cli_util.hpp"

namespace ckpt::cli {
namespace {

using test::lines;
using test::run_ckpt;
using test::TempDir;

const std::vector<std::string> kBadNumbers = {"nan",
                                              "NaN",
                                              "inf",
                                              "-inf",
                                              "-1",
                                              "-0.5",
                                              "1e308",
                                              "-1e308",
                                              "99999999999999",
                                              std::string(300, '9'),
                                              "abc",
                                              "",
                                              "0x",
                                              "1e",
                                              "4294967296",
                                              "18446744073709551616"};

std::vector<std::string> subcommands() {
  auto r = run_ckpt({"--help"});
  std::vector<std::string> out;
  auto at = r.out.find("Subcommands:");
  std::istringstream in(r.out.substr(at == std::string::npos ? r.out.size() : at));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line) && !line.empty()) out.push_back(line.substr(0, line.find(' ', 2)));
  for (auto& s : out) s.erase(0, s.find_first_not_of(' '));
  return out;
}

// Options of `ckpt SUB --help` whose value is a number: name -> type as --help shows it.
std::map<std::string, std::string> numeric_options(const std::string& sub) {
  auto r = run_ckpt({sub, "--help"});
  std::map<std::string, std::string> out;
  static const std::regex row(R"(^\s+((?:-\w,)?--[\w-]+|-\w)\s+((?:INT|UINT|FLOAT|NUMBER)\S*))");
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    std::string names = m[1];
    out[names.substr(names.rfind(',') + 1)] = m[2];
  }
  return out;
}

// Arguments that make each subcommand's command line complete, so that parsing reaches the
// value under test. Nothing here can harm the machine: no such pid, stores in `dir`.
std::vector<std::string> baseline(const std::string& sub, const std::string& dir,
                                  const std::string& replaced) {
  std::map<std::string, std::vector<std::string>> base = {
      {"dump", {"-t", "4194300", "-D", dir + "/store"}},
      {"restore", {"-D", dir + "/store"}},
      {"run", {"--dir", dir + "/run"}},
      {"checkpoint", {dir + "/none"}},
      {"status", {dir + "/none"}},
      {"show", {dir}},
      {"verify", {dir}}};
  std::vector<std::string> args = base[sub];
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i].starts_with("-") &&
        (args[i] == replaced || (replaced == "--tree" && args[i] == "-t"))) {
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      break;
    }
  }
  return args;
}

void expect_one_line_failure(const std::vector<std::string>& args, const test::Run& r) {
  std::string cmd;
  for (auto& a : args) cmd += " '" + a + "'";
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << "ckpt" << cmd << ": " << r.describe();
  EXPECT_EQ(lines(r.err), 1u) << "ckpt" << cmd << ": " << r.describe();
}

TEST(BadInput, EveryNumericOptionOfEverySubcommand) {
  auto subs = subcommands();
  ASSERT_GE(subs.size(), 8u);
  size_t options = 0, cases = 0;
  for (auto& sub : subs) {
    for (auto& [opt, type] : numeric_options(sub)) {
      ++options;
      for (auto& value : kBadNumbers) {
        TempDir dir;
        std::vector<std::string> args = {sub};
        auto base = baseline(sub, dir.path().string(), opt);
        args.insert(args.end(), base.begin(), base.end());
        args.push_back(opt);
        args.push_back(value);
        if (sub == "run") args.insert(args.end(), {"--", "/bin/true"});
        auto r = run_ckpt(args, dir.path());
        expect_one_line_failure(args, r);
        ++cases;
      }
    }
  }
  // dump -t; run --interval --keep --min-uptime --max-retries --max-restarts; checkpoint --timeout
  EXPECT_GE(options, 7u);
  std::cout << options << " numeric options, " << cases << " bad values refused\n";
}

TEST(BadInput, RunArgumentIsAPidOrADirectory) {
  for (const std::string sub : {"status", "checkpoint"}) {
    for (auto& value : kBadNumbers) {
      TempDir dir;
      auto r = run_ckpt({sub, value}, dir.path());
      expect_one_line_failure({sub, value}, r);
    }
  }
}

TEST(BadInput, EmptyPathsAreRefusedAndWriteNothing) {
  TempDir dir;
  const std::vector<std::vector<std::string>> cases = {{"dump", "-t", "4194300", "-D", ""},
                                                       {"restore", "-D", ""},
                                                       {"restore", "-D", "x", "--pidfile", ""},
                                                       {"restore", "-D", "x", "--generation", ""},
                                                       {"run", "--dir", "", "--", "/bin/true"},
                                                       {"show", ""},
                                                       {"verify", ""},
                                                       {"-o", "", "check"},
                                                       {"--log", "", "check"}};
  for (auto& args : cases) {
    auto r = run_ckpt(args, dir.path());
    expect_one_line_failure(args, r);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "-D '' wrote into the current directory";
}

TEST(BadInput, LogSpecsAreChecked) {
  for (const std::string spec : {"zzz=nonsense", "nonsense", "restore=", "=debug", "debug,,info",
                                 "zzz=debug", "restore=debug,ptrace=loud"}) {
    auto r = run_ckpt({"--log", spec, "check"});
    EXPECT_EQ(r.exit_code, 2) << spec << ": " << r.describe();
    EXPECT_EQ(lines(r.err), 1u) << r.describe();
    EXPECT_NE(r.err.find("--log"), std::string::npos) << r.err;
  }
  auto r = run_ckpt({"check", "--log", "zzz=nonsense"});
  EXPECT_EQ(r.exit_code, 2) << "after the subcommand too: " << r.describe();
  for (const std::string good : {"debug", "info,ptrace=debug", "restore=off,image=warn"}) {
    r = run_ckpt({"--log", good, "check", "--json"});
    EXPECT_NE(r.exit_code, 2) << good << ": " << r.describe();
  }
}

TEST(BadInput, CkptLogEnvironmentIsChecked) {
  setenv("CKPT_LOG", "zzz=nonsense", 1);
  auto r = run_ckpt({"check"});
  unsetenv("CKPT_LOG");
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("CKPT_LOG"), std::string::npos) << r.err;
}

TEST(BadInput, InheritFdSpellings) {
  TempDir dir;
  for (const std::string v : {"7", "fd[7]", "fd[x]:pipe:[1]", "fd[999999999999]:pipe:[1]",
                              "fd[7]:pipe:[x]", "fd[200]:pipe:[1]"}) {
    auto r = run_ckpt({"restore", "-D", dir.path().string(), "--inherit-fd", v}, dir.path());
    expect_one_line_failure({"restore", "--inherit-fd", v}, r);
    EXPECT_NE(r.err.find("--inherit-fd"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace ckpt::cli
