// Unix sockets ckpt cannot save: a socketpair end whose peer is outside the dumped processes or
// closed, a listening or bound (named) socket, a queue carrying file descriptors (SCM_RIGHTS) or
// an out-of-band byte. Each dump
// fails with one line naming the fd and what the socket is, and leaves every process running
// untraced, the socket still working. Pairs inside the tree are saved: ProgramTest
// tree_socketpair.
#include <gtest/gtest.h>

#include "test_process.hpp"

namespace e2e {
namespace {

size_t line_count(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n + (!s.empty() && s.back() != '\n');
}

std::string fmt_pid(const std::string& prefix, pid_t pid) {
  return prefix + std::to_string(pid);
}

class UnixSocketRefusal : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }

  // Dumps `target` (with its descendants): the dump must fail with one line containing every
  // piece of `message`, and leave `target` running untraced.
  void expect_refused(TestProcess& p, pid_t target, const std::vector<std::string>& message) {
    auto r = run_ckpt({"dump", "-t", std::to_string(target), "-D", p.store().string()});
    EXPECT_EQ(r.exit_code(), 1) << r.describe();
    EXPECT_EQ(line_count(r.err), 1u) << r.err;
    for (auto& piece : message)
      EXPECT_NE(r.err.find(piece), std::string::npos)
          << "the message does not say '" << piece << "': " << r.err;
    sleep_for(100ms);  // the dumper lets go of the tree before it exits
    EXPECT_TRUE(left_running_untraced(target));
  }
};

TEST_F(UnixSocketRefusal, PeerOutsideTheDumpedProcesses) {
  TestProcess p({program_path("unix_refusal"), "outside"});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  // The child alone: its socket's peer stays in the parent.
  expect_refused(p, kids[0],
                 {"fd 10", "unix stream socket", fmt_pid("in pid ", p.pid()), "outside"});
  EXPECT_TRUE(left_running_untraced(p.pid()));
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, ListeningSocket) {
  TestProcess p({program_path("unix_refusal"), "listen"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(
      p, p.pid(),
      {"fd 10", "listening unix stream socket on " + (p.dir() / "listen.sock").string()});
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, SocketBoundToAName) {
  TestProcess p({program_path("unix_refusal"), "bound"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(
      p, p.pid(),
      {"fd 10", "unix datagram socket bound to @ckpt-e2e-bound-" + std::to_string(p.pid())});
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, FileDescriptorInFlight) {
  TestProcess p({program_path("unix_refusal"), "rights"});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  expect_refused(p, p.pid(),
                 {fmt_pid("pid ", kids[0]) + ": fd 10", "unix datagram socket",
                  "file descriptors in flight (SCM_RIGHTS)"});
  EXPECT_TRUE(left_running_untraced(kids[0]));
  // The child then takes the fd from the queue and reads the pipe through it: nothing lost.
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, OutOfBandByteQueued) {
  TestProcess p({program_path("unix_refusal"), "oob"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, p.pid(), {"fd 10", "unix stream socket", "out-of-band data (MSG_OOB)"});
  EXPECT_TRUE(p.finish());  // the byte is still out of band, the data still there
}

TEST_F(UnixSocketRefusal, PeerClosed) {
  TestProcess p({program_path("unix_refusal"), "closed"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, p.pid(), {"fd 10", "unix stream socket whose peer has been closed"});
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
