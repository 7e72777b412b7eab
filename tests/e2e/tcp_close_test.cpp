// CRIU's --tcp-close: connections saved without their state (no network lock, no repair mode)
// and restored closed, as connections their peers reset; a listener's waiting connections left
// out. What `ckpt run` does at every checkpoint, since a crash ends the connections anyway. The
// server (helpers/tcp_close_server.c) is an event loop whose answers count every message: after
// the restore it must drop its old client by itself, serve a new one, and go on counting from
// the checkpoint. IPv4 and IPv6.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_util.hpp"
#include "support/tcp_ask.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

using ckpt::test_support::ask;

class TcpCloseTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { become_subreaper(); }
  int family() const { return GetParam() == 6 ? AF_INET6 : AF_INET; }

  void start(const std::string& mode = "") {
    std::vector<std::string> argv = {program_path("tcp_close_server"), std::to_string(GetParam())};
    if (!mode.empty()) argv.push_back(mode);
    p = std::make_unique<TestProcess>(argv);
    ASSERT_TRUE(wait_for_text(p->dir() / "stdout", "READY", p->pid(), 5s)) << p->output();
    port = printed_port(p->out());
  }

  void waiting_left_out(const std::vector<std::string>& flags);

  std::unique_ptr<TestProcess> p;
  int port = -1;
};

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

TEST_P(TcpCloseTest, ConnectionsComeBackClosedAndTheServerGoesOnCounting) {
  ASSERT_NO_FATAL_FAILURE(start());
  Fd a{connect_to(family(), port)};
  ASSERT_GE(a.fd, 0) << strerror(errno);
  ASSERT_EQ(ask(a.fd, "a1"), "echo:a1 #1");
  ASSERT_EQ(ask(a.fd, "a2"), "echo:a2 #2");
  ASSERT_TRUE(p->dump({"--tcp-close"}));
  EXPECT_FALSE(locked_port(port)) << "--tcp-close locked the network";
  // Without the flag: the image alone says the connection comes back closed.
  ASSERT_TRUE(p->restore());
  // The server meets its old client's socket as a lost connection and drops it by itself.
  EXPECT_TRUE(wait_for_text(p->dir() / "stdout", "CLOSED", p->pid(), 5s)) << p->output();
  EXPECT_NE(p->out().find("CLOSED Software caused connection abort"), std::string::npos)
      << p->output();
  Fd b{connect_to(family(), port)};
  ASSERT_GE(b.fd, 0) << strerror(errno);
  EXPECT_EQ(ask(b.fd, "b1"), "echo:b1 #3") << "the count goes on from the checkpoint";
  EXPECT_TRUE(p->finish());
}

// The program is not stopped longer than any dump stops it, and its connections never see the
// lock or repair mode: a client goes on talking across the checkpoint.
TEST_P(TcpCloseTest, LeaveRunningDumpLeavesTheConnectionsAlone) {
  ASSERT_NO_FATAL_FAILURE(start());
  Fd a{connect_to(family(), port)};
  ASSERT_GE(a.fd, 0) << strerror(errno);
  ASSERT_EQ(ask(a.fd, "a1"), "echo:a1 #1");
  auto r = run_ckpt({"dump", "--tcp-close", "--leave-running", "-t", std::to_string(p->pid()), "-D",
                     p->store().string()});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_FALSE(locked_port(port));
  EXPECT_EQ(ask(a.fd, "a2"), "echo:a2 #2");
  EXPECT_EQ(p->out().find("CLOSED"), std::string::npos) << p->output();
  EXPECT_TRUE(p->finish());
}

// A connection still in the listener's accept queue is refused without --skip-in-flight (it
// cannot be put back) or --tcp-close, which implies it; with either, it is left out: its client
// loses it, and the next one is served.
void TcpCloseTest::waiting_left_out(const std::vector<std::string>& flags) {
  ASSERT_NO_FATAL_FAILURE(start("late"));
  Fd waiting{connect_to(family(), port)};
  ASSERT_GE(waiting.fd, 0) << strerror(errno);
  auto refused = run_ckpt(
      {"dump", "--tcp-established", "-t", std::to_string(p->pid()), "-D", p->store().string()});
  EXPECT_EQ(refused.exit_code(), 1) << refused.describe();
  EXPECT_NE(refused.err.find("waiting to be accepted"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--skip-in-flight"), std::string::npos) << refused.err;
  ASSERT_TRUE(p->dump(flags));
  ASSERT_TRUE(p->restore());
  ::kill(p->pid(), SIGUSR1);  // accept from now on
  Fd next{connect_to(family(), port)};
  ASSERT_GE(next.fd, 0) << strerror(errno);
  EXPECT_EQ(ask(next.fd, "n1"), "echo:n1 #1");
  // The waiting client's connection ended with the original listener.
  EXPECT_NE(ask(waiting.fd, "w1").rfind("echo:", 0), 0u);
  EXPECT_TRUE(p->finish());
}

TEST_P(TcpCloseTest, ConnectionsWaitingToBeAcceptedAreLeftOut) {
  waiting_left_out({"--tcp-close"});
}

TEST_P(TcpCloseTest, SkipInFlightLeavesWaitingConnectionsOutOfAnEstablishedDump) {
  waiting_left_out({"--tcp-established", "--skip-in-flight"});
}

INSTANTIATE_TEST_SUITE_P(Families, TcpCloseTest, ::testing::Values(4, 6),
                         [](const auto& info) { return "IPv" + std::to_string(info.param); });

}  // namespace
}  // namespace e2e
