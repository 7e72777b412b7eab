// tmux, the Debian program, dumped and restored with a busy pane: its server (a daemon holding
// each pane's pseudo-terminal master and a listening unix socket), the shell in the pane and
// what runs there. The pane prints numbered lines without pause, so every dump finds output the
// server has not read yet: it must be saved and come back, none lost or repeated, and tmux's
// client must reach the restored server and drive the pane.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <regex>
#include <sstream>

#include "e2e_util.hpp"

namespace e2e {
namespace {

// Prints "line N" without pause but a short sleep every 20 lines (some 40 000 lines a second).
constexpr const char* kPrinter =
    "import sys, time\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    sys.stdout.write('line %d\\n' % i)\n"
    "    sys.stdout.flush()\n"
    "    if i % 20 == 0: time.sleep(0.0005)\n";

class TmuxTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
  void start(const char* program) {
    sock_ = dir_ / "sock";
    auto r =
        tmux({"new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "python3", "-c", program});
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    ASSERT_EQ(tmux({"set-option", "-t", "t", "history-limit", "1000000"}).exit_code(), 0);
    auto pid = tmux({"display", "-p", "-t", "t", "#{pid}"});
    server_ = std::atoi(pid.out.c_str());
    ASSERT_GT(server_, 0) << pid.describe();
  }
  void TearDown() override {
    if (server_ <= 0) return;
    auto tree = descendants(server_);
    ::kill(server_, SIGKILL);
    for (pid_t p : tree) ::kill(p, SIGKILL);
    tree.push_back(server_);
    EXPECT_TRUE(reap_all(tree, {}));
  }

  CkptResult tmux(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/tmux", "-f", "/dev/null", "-S", sock_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 10s);
  }

  std::string history() { return tmux({"capture-pane", "-p", "-J", "-S", "-", "-t", "t"}).out; }

  // The numbers of the pane's history, first to last, from the whole scrollback.
  std::vector<long> numbers() {
    std::string text = history();
    std::vector<long> out;
    std::istringstream in(text);
    std::regex line("^line (\\d+)$");
    std::smatch m;
    for (std::string s; std::getline(in, s);)
      if (std::regex_match(s, m, line)) out.push_back(std::stol(m[1]));
    return out;
  }

  // Every number from the first to the last once, in order: nothing lost or repeated.
  ::testing::AssertionResult contiguous(const std::vector<long>& n) {
    if (n.size() < 100) return ::testing::AssertionFailure() << "only " << n.size() << " lines";
    for (size_t i = 1; i < n.size(); ++i)
      if (n[i] != n[i - 1] + 1)
        return ::testing::AssertionFailure()
               << "line " << n[i] << " follows line " << n[i - 1] << " (" << n.size() << " lines)";
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult dump(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"dump", "-t", std::to_string(server_), "-D",
                                     (dir_ / "store").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto tree = descendants(server_);
    // A server that has fallen behind its pane (its read buffer full) is refused, left as it
    // was: asked again, as a user would, once it caught up.
    auto r = run_ckpt(args, 30s);
    for (int again = 0;
         again < 100 && r.exit_code() != 0 && r.err.find("read buffer full") != std::string::npos;
         ++again) {
      sleep_for(20ms);
      r = run_ckpt(args, 30s);
    }
    if (r.exit_code() != 0) return ::testing::AssertionFailure() << r.describe();
    if (!extra.empty()) return ::testing::AssertionSuccess();  // --leave-running
    tree.push_back(server_);
    return reap_all(tree, {});
  }

  ::testing::AssertionResult restore() {
    auto r = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"}, 30s);
    if (r.exit_code() != 0) return ::testing::AssertionFailure() << r.describe();
    return ::testing::AssertionSuccess();
  }

  // Waits until the pane has printed past `n`.
  bool printed_past(long n) {
    for (int i = 0; i < 200; ++i) {
      auto got = numbers();
      if (!got.empty() && got.back() > n) return true;
      sleep_for(25ms);
    }
    return false;
  }

  TempDir dir_;
  fs::path sock_;
  pid_t server_ = -1;
};

TEST_F(TmuxTest, BusyPaneLosesNoLineAcrossDumpAndRestore) {
  ASSERT_NO_FATAL_FAILURE(start(kPrinter));
  ASSERT_TRUE(printed_past(1000));
  for (int cycle = 0; cycle < 3; ++cycle) {
    ASSERT_TRUE(dump()) << "cycle " << cycle;
    ASSERT_TRUE(restore()) << "cycle " << cycle;
    auto seen = numbers();
    ASSERT_FALSE(seen.empty()) << "the restored server answers no capture-pane";
    ASSERT_TRUE(printed_past(seen.back() + 1000)) << "the pane stopped after cycle " << cycle;
  }
  EXPECT_TRUE(contiguous(numbers()));
  // The client drives the restored server: a new window runs a command.
  auto r = tmux({"new-window", "-t", "t", "sh", "-c", "echo from-the-new-window; sleep 100"});
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
}

TEST_F(TmuxTest, BusyPaneLosesNoLineAcrossLeaveRunningDumps) {
  ASSERT_NO_FATAL_FAILURE(start(kPrinter));
  ASSERT_TRUE(printed_past(1000));
  for (int cycle = 0; cycle < 5; ++cycle) ASSERT_TRUE(dump({"--leave-running"})) << cycle;
  auto seen = numbers();
  ASSERT_TRUE(printed_past(seen.back() + 1000));
  EXPECT_TRUE(contiguous(numbers()));
}

}  // namespace
}  // namespace e2e
