// `ckpt dump`, `restore`, `status` and `check` as a script uses them: --json results, -v/-o
// logs, and the log a failed dump or restore keeps in the store.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"

namespace ckpt::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::lines;
using test::run_ckpt;
using test::TempDir;

constexpr const char* kNoSuchPid = "4194300";

pid_t start_sleeper() {
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    int null = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
    close_range(3, ~0U, 0);
    execlp("sleep", "sleep", "1000", nullptr);
    _exit(127);
  }
  return pid;
}

void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  for (int i = 0; i < 500 && waitpid(pid, nullptr, WNOHANG) == 0; ++i) usleep(10000);
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

class EngineCli : public ::testing::Test {
 protected:
  // The restored process is re-parented to us when `ckpt restore --detach` exits.
  void SetUp() override { prctl(PR_SET_CHILD_SUBREAPER, 1); }
  TempDir dir_;
  fs::path store() const { return dir_.path() / "store"; }
};

TEST_F(EngineCli, DumpAndRestoreJson) {
  pid_t pid = start_sleeper();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto r = run_ckpt({"dump", "-t", std::to_string(pid), "-D", store().string(), "-R", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto j = json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["pid"], pid);
  EXPECT_EQ(j["store"], store().string());
  EXPECT_TRUE(j["generation"].get<std::string>().starts_with("gen-")) << j;
  EXPECT_TRUE(fs::is_directory(j["path"].get<std::string>()));
  EXPECT_GT(j["bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(j["frozen_ms"].get<double>(), 0);
  EXPECT_EQ(j["left_running"], true);
  EXPECT_EQ(r.err, "") << "--json prints no text line";
  EXPECT_TRUE(fs::is_empty(store() / "logs")) << "a successful dump keeps no log";
  EXPECT_EQ(mode_of(store()), 0700u);
  kill_and_reap(pid);

  r = run_ckpt({"restore", "-D", store().string(), "--detach", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  j = json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["pid"], pid) << "restored with its pid";
  EXPECT_EQ(j["generation"], json::parse(r.out)["generation"]);
  EXPECT_EQ(j["detached"], true);
  EXPECT_TRUE(j["skipped"].is_array());
  EXPECT_EQ(kill(pid, 0), 0) << "the restored process runs";
  kill_and_reap(pid);
}

TEST_F(EngineCli, FailedDumpKeepsItsLogAndNamesIt) {
  auto r = run_ckpt({"dump", "-t", kNoSuchPid, "-D", store().string()});
  ASSERT_EQ(r.exit_code, 1) << r.describe();
  ASSERT_EQ(lines(r.err), 1u) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex(R"(no such process \(log: (\S+\.log)\)\n$)")))
      << r.err;
  fs::path log = m[1].str();
  EXPECT_EQ(log.parent_path(), store() / "logs");
  EXPECT_EQ(mode_of(log), 0600u);
  EXPECT_EQ(mode_of(store() / "logs"), 0700u);
  std::stringstream text;
  text << std::ifstream(log).rdbuf();
  EXPECT_NE(text.str().find(std::string("dump -t ") + kNoSuchPid), std::string::npos)
      << "the command line comes first: " << text.str();
  EXPECT_NE(text.str().find("error cli: dump pid " + std::string(kNoSuchPid) + ": no such process"),
            std::string::npos)
      << text.str();

  r = run_ckpt({"dump", "-t", kNoSuchPid, "-D", store().string(), "--json"});
  ASSERT_EQ(r.exit_code, 1);
  auto j = json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_NE(j["error"].get<std::string>().find("no such process"), std::string::npos);
  EXPECT_TRUE(fs::exists(j["log"].get<std::string>()));
}

TEST_F(EngineCli, FailedRestoreKeepsItsLog) {
  ASSERT_EQ(run_ckpt({"dump", "-t", kNoSuchPid, "-D", store().string()}).exit_code, 1);
  auto r = run_ckpt({"restore", "-D", store().string(), "--json"});
  ASSERT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_NE(j["error"].get<std::string>().find("no valid generation"), std::string::npos) << j;
  EXPECT_TRUE(j["log"].get<std::string>().find("/logs/restore-") != std::string::npos) << j;
}

TEST_F(EngineCli, KeptLogsAreBounded) {
  for (size_t i = 0; i < 23; ++i)
    ASSERT_EQ(run_ckpt({"dump", "-t", kNoSuchPid, "-D", store().string()}).exit_code, 1);
  size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(store() / "logs")) ++n;
  EXPECT_EQ(n, 20u);
}

TEST_F(EngineCli, VerboseLogLinesGoToTheLogFileWithPidAndTid) {
  auto log = dir_.path() / "ckpt.log";
  auto r = run_ckpt({"dump", "-v", "-o", log.string(), "-t", kNoSuchPid, "-D", store().string()});
  ASSERT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err), 1u) << "log lines went to the file, the error line to stderr: " << r.err;
  std::ifstream in(log);
  std::string line;
  size_t n = 0;
  static const std::regex shape(R"(^ckpt\[(\d+)/(\d+)\] \d+\.\d{6} (info|warn|error) \w+: .+)");
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, shape)) << line;
  }
  EXPECT_GE(n, 1u);
  EXPECT_EQ(mode_of(log), 0600u);
  // Without -v only warnings and errors would be logged: the info line is not there.
  r = run_ckpt({"dump", "-o", log.string(), "-t", kNoSuchPid, "-D", store().string()});
  std::stringstream text;
  text << std::ifstream(log).rdbuf();
  EXPECT_EQ(text.str().find(" info "), std::string::npos) << text.str();
  // CRIU's spelling of the same.
  r = run_ckpt({"dump", "-v4", "-o", log.string(), "-t", kNoSuchPid, "-D", store().string()});
  std::stringstream criu;
  criu << std::ifstream(log).rdbuf();
  EXPECT_NE(criu.str().find(" info cli: "), std::string::npos) << criu.str();
}

TEST_F(EngineCli, CriuSpellingsAreAccepted) {
  auto r = run_ckpt({"dump", "-t", kNoSuchPid, "-D", store().string(), "-R", "-j", "--file-locks",
                     "--tcp-established", "--ext-unix-sk"});
  EXPECT_EQ(r.exit_code, 1) << "parsed, then the pid is missing: " << r.describe();
  EXPECT_NE(r.err.find("no such process"), std::string::npos) << r.err;
  // run_ckpt starts ckpt with fds 0-2 only: the check names the missing fd 7.
  r = run_ckpt({"restore", "-D", store().string(), "-d", "-j", "--file-locks", "--tcp-established",
                "--ext-unix-sk", "--inherit-fd", "fd[7]:pipe:[12345]"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("fd 7 is not open"), std::string::npos) << r.err;
  r = run_ckpt({"restore", "-D", store().string(), "--restore-detached"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("no valid generation"), std::string::npos) << r.err;
}

TEST_F(EngineCli, StatusJson) {
  auto run_dir = dir_.path() / "run";
  pid_t sv = fork();
  if (sv == 0) {
    int null = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
    execl(CKPT_CLI_PATH, CKPT_CLI_PATH, "run", "--interval", "0", "--dir", run_dir.c_str(), "--",
          "sleep", "1000", nullptr);
    _exit(127);
  }
  json j;
  for (int i = 0; i < 500; ++i) {
    auto r = run_ckpt({"status", "--json", run_dir.string()});
    if (r.exit_code == 0) {
      j = json::parse(r.out);
      if (j["child_pid"].get<int>() > 0) break;
    }
    usleep(20000);
  }
  EXPECT_EQ(j["live"], true) << j;
  EXPECT_EQ(j["supervisor_pid"], sv);
  EXPECT_EQ(j["store"], run_dir.string());
  EXPECT_EQ(j["program"], json::array({"sleep", "1000"}));
  EXPECT_EQ(mode_of(run_dir / "run.json"), 0600u);
  kill(sv, SIGTERM);
  int status = 0;
  waitpid(sv, &status, 0);
  auto r = run_ckpt({"status", "--json", run_dir.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(json::parse(r.out)["live"], false);
}

TEST_F(EngineCli, CheckJson) {
  auto r = run_ckpt({"check", "--json"});
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.describe();
  auto j = json::parse(r.out);
  EXPECT_TRUE(j["usable"].is_boolean());
  EXPECT_GT(j["features"].size(), 3u);
}

}  // namespace
}  // namespace ckpt::cli
