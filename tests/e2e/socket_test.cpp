// Sockets ckpt cannot save make the dump fail with one line naming the fd and the socket, and
// leave the process running untraced; a listener whose port was taken since the dump makes the
// restore fail naming fd and address. (A listener that is saved and restored: programs/
// listen_accept.c.)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "net_util.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

class SocketTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }

  // Dumps a tcp_socket helper in `mode`; expects a one-line failure containing every `want`
  // (with {port} replaced) and the process running on untraced.
  void expect_refused(const std::string& mode, const std::vector<std::string>& want) {
    TestProcess p({program_path("tcp_socket"), mode});
    ASSERT_TRUE(p.wait_ready());
    std::string port = std::to_string(printed_port(p.out()));
    auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
    EXPECT_EQ(r.exit_code(), 1) << r.describe();
    EXPECT_EQ(line_count(r.err), 1u) << r.err;
    for (std::string w : want) {
      auto at = w.find("{port}");
      if (at != std::string::npos) w.replace(at, 6, port);
      EXPECT_NE(r.err.find(w), std::string::npos) << "no '" << w << "' in: " << r.err;
    }
    sleep_for(100ms);
    EXPECT_TRUE(left_running_untraced(p.pid()));
  }
};

TEST_F(SocketTest, ListenerWithConnectionWaitingIsRefused) {
  expect_refused("waiting", {"fd 3", "127.0.0.1:{port}", "1 connection(s) waiting"});
}

TEST_F(SocketTest, ConnectedTcpSocketIsRefused) {
  expect_refused("connected",
                 {"fd 4", "socket:[", "connected TCP socket", ":{port}", "--tcp-established"});
}

// The receive queue of raw socket `inode` in /proc/PID/net/raw (-1 when not found).
long raw_rx_queue(pid_t pid, const std::string& inode) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/net/raw");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, tr, retr, uid, timeout, ino;
    f >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid >> timeout >> ino;
    if (ino == inode) return std::stol(queues.substr(queues.find(':') + 1), nullptr, 16);
  }
  return -1;
}

// A raw socket is saved (ping: debian_test.cpp) without the packets it had not read: they came
// from elsewhere and cannot be queued again (as for UDP, IP may lose them), and the dump says so.
TEST_F(SocketTest, RawSocketIsSavedWithoutThePacketsItHadNotRead) {
  TestProcess p({program_path("tcp_socket"), "raw"});
  ASSERT_TRUE(p.wait_ready());
  auto link = [&] {
    return fs::read_symlink("/proc/" + std::to_string(p.pid()) + "/fd/3").string();
  };
  std::string inode = link().substr(8, link().size() - 9);  // socket:[INODE]
  EXPECT_GT(raw_rx_queue(p.pid(), inode), 0) << "the helper's ping left nothing queued";
  auto r = run_ckpt(
      {"dump", "--leave-running", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_NE(r.err.find("fd 3 (a raw IP socket): a packet waiting to be read"), std::string::npos)
      << r.err;
  p.kill_now();
  ASSERT_TRUE(p.restore());
  std::string now = link();
  EXPECT_EQ(now.rfind("socket:[", 0), 0u) << now;
  EXPECT_EQ(raw_rx_queue(p.pid(), now.substr(8, now.size() - 9)), 0);
}

TEST_F(SocketTest, PacketSocketIsRefused) {
  expect_refused("packet", {"fd 3", "socket:[", "packet socket (AF_PACKET)"});
}

// Saved since unix sockets of every kind are (more in unix_socket_test.cpp).
TEST_F(SocketTest, UnconnectedUnixSocketIsSaved) {
  TestProcess p({program_path("tcp_socket"), "unix"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  std::error_code ec;
  auto link = fs::read_symlink("/proc/" + std::to_string(p.pid()) + "/fd/3", ec).string();
  EXPECT_EQ(link.rfind("socket:[", 0), 0u) << "fd 3 is '" << link << "'";
}

TEST_F(SocketTest, RestoreFailsWhenThePortIsTaken) {
  TestProcess p({program_path("tcp_socket"), "listen"});
  ASSERT_TRUE(p.wait_ready());
  int port = printed_port(p.out());
  ASSERT_GT(port, 0) << p.output();
  ASSERT_TRUE(p.dump());
  // Someone else listens on the port meanwhile.
  int other = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(other, 0);
  sockaddr_in a = loopback(port);
  ASSERT_EQ(::bind(other, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
  ASSERT_EQ(::listen(other, 1), 0);
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  ::close(other);
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("fd 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  EXPECT_TRUE(live_children_of_self().empty()) << "restore left a process behind";
}

TEST_F(SocketTest, RestoredListenerTakesConnectionsFromOtherProcesses) {
  TestProcess p({program_path("tcp_socket"), "listen"});
  ASSERT_TRUE(p.wait_ready());
  int port = printed_port(p.out());
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  // The restored process listens on the same port: a connection is taken into its queue.
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(c, 0);
  sockaddr_in a = loopback(port);
  EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
  ::close(c);
  p.kill_now();
}

}  // namespace
}  // namespace e2e
