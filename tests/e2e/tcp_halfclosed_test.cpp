// Half-closed TCP connections across dump and restore (helpers/tcp_halfclosed.c is the server,
// this test its peer outside the dumped tree): a connection whose peer closed its side with bytes
// still unread (CLOSE_WAIT), one whose server closed its side with bytes still unsent
// (FIN_WAIT1), one closed and acknowledged (FIN_WAIT2), one closed by both with the server's FIN
// not yet acknowledged (LAST_ACK: an nft rule of the test drops its acknowledgment for a while),
// one the server shut down for reading only (SHUT_RD, ESTABLISHED) with bytes still unread.
// After the restore each is in the same state, every byte arrives once and in order, each end of
// file comes where it was, and the last one closes once its FIN is acknowledged.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "net_util.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

constexpr long kToServer = 50000;   // sent on "a" before the test closes its side
constexpr long kToClient = 400000;  // written on "b" before the server closes its side

constexpr int kEstablished = 1, kFinWait1 = 4, kFinWait2 = 5, kCloseWait = 8, kLastAck = 9;

int local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return -1;
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in&>(ss).sin_port
                                       : reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
}

// The state (TCP_* number) of the server's side of each connection from `server_port`, keyed by
// the client's port, from /proc/net/tcp{,6}: "sl local rem st ...", addresses "HEX:PORT".
std::map<int, int> server_states(int family, int server_port) {
  std::map<int, int> out;
  std::ifstream in(family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6");
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, rem, st;
    f >> sl >> local >> rem >> st;
    auto port = [](const std::string& a) {
      return std::stoi(a.substr(a.find(':') + 1), nullptr, 16);
    };
    if (local.find(':') == std::string::npos || port(local) != server_port) continue;
    out[port(rem)] = std::stoi(st, nullptr, 16);
  }
  return out;
}

// Drops the test's segments without FIN from `client` to the server: its acknowledgment of the
// server's FIN never arrives, its own FIN does. Table `inet ckpt_halfclosed_<client>`.
class AckBlock {
 public:
  AckBlock(int client, int server) : table_("ckpt_halfclosed_" + std::to_string(client)) {
    std::string script = "add table inet " + table_ + "\nadd chain inet " + table_ +
                         " input { type filter hook input priority -310; policy accept; }\n" +
                         "add rule inet " + table_ + " input tcp sport " + std::to_string(client) +
                         " tcp dport " + std::to_string(server) + " tcp flags & fin == 0 drop\n";
    auto script_file = std::filesystem::temp_directory_path() / (table_ + ".nft");
    std::ofstream(script_file) << script;
    auto r = run_command({"/usr/sbin/nft", "-f", script_file.string()});
    std::filesystem::remove(script_file);
    ok_ = r.exit_code() == 0;
    error_ = r.describe();
  }
  ~AckBlock() { lift(); }
  void lift() {
    if (ok_) run_command({"/usr/sbin/nft", "delete", "table", "inet", table_});
    ok_ = false;
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  std::string table_, error_;
  bool ok_ = false;
};

struct Peer {
  int a = -1, b = -1, c = -1, d = -1, e = -1;
  std::unique_ptr<AckBlock> block;
  ~Peer() {
    block.reset();
    for (int fd : {a, b, c, d, e})
      if (fd >= 0) ::close(fd);
  }
};

class TcpHalfClosedTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { become_subreaper(); }
  int family() const { return GetParam() == 6 ? AF_INET6 : AF_INET; }

  // The states the server's sides are in (or get to within 5 s), "" when all are as expected.
  std::string states_wrong(const Peer& c) {
    std::map<int, int> want = {{local_port(c.a), kCloseWait},
                               {local_port(c.b), kFinWait1},
                               {local_port(c.c), kFinWait2},
                               {local_port(c.d), kLastAck},
                               {local_port(c.e), kEstablished}};
    std::string why;
    for (int i = 0; i < 200; ++i) {
      auto got = server_states(family(), port_);
      why.clear();
      for (auto [client, state] : want) {
        int is = got.count(client) ? got[client] : -1;
        if (is != state) why += fmt_state(client, is, state);
      }
      if (why.empty()) return why;
      sleep_for(25ms);
    }
    return why;
  }

  static std::string fmt_state(int client, int is, int want) {
    return "connection from port " + std::to_string(client) + " in state " + std::to_string(is) +
           ", not " + std::to_string(want) + "; ";
  }

  void start(Peer& c) {
    p_ = std::make_unique<TestProcess>(
        std::vector<std::string>{program_path("tcp_halfclosed"), std::to_string(GetParam()),
                                 std::to_string(kToServer), std::to_string(kToClient)});
    ASSERT_TRUE(wait_for_text(p_->dir() / "stdout", "PORT", p_->pid(), 5s)) << p_->output();
    port_ = printed_port(p_->out());
    for (int* fd : {&c.a, &c.b, &c.c, &c.d, &c.e}) {
      *fd = connect_to(family(), port_);
      ASSERT_GE(*fd, 0) << strerror(errno);
    }
    // The handshake's last segment must be through before the block.
    for (int i = 0; i < 200 && server_states(family(), port_)[local_port(c.d)] != kEstablished; ++i)
      sleep_for(25ms);
    c.block = std::make_unique<AckBlock>(local_port(c.d), port_);
    ASSERT_TRUE(c.block->ok()) << c.block->error();
    ASSERT_EQ(::shutdown(c.d, SHUT_WR), 0);
    ASSERT_TRUE(send_pattern(c.a, 0, kToServer));
    ASSERT_EQ(::shutdown(c.a, SHUT_WR), 0);
    ASSERT_EQ(::send(c.e, "early", 5, MSG_NOSIGNAL), 5);
    char buf[16];
    ASSERT_EQ(::recv(c.c, buf, sizeof buf, MSG_WAITALL), 3);
    ASSERT_EQ(std::string(buf, 3), "bye");
    ASSERT_EQ(::recv(c.c, buf, sizeof buf, 0), 0) << "no end of file on c";
    ASSERT_TRUE(p_->wait_ready());
    ASSERT_EQ(states_wrong(c), "");
  }

  // The server goes on: the test reads "b" to its end, lets the server read "a" to its end and
  // answer, and closes its side of "b" after a last message.
  void finish(Peer& c) {
    c.block->lift();
    EXPECT_TRUE(read_pattern(c.b, kToClient));
    char buf[64];
    EXPECT_EQ(::recv(c.b, buf, sizeof buf, 0), 0) << "no end of file on b";
    ASSERT_EQ(::send(c.c, "go", 2, MSG_NOSIGNAL), 2);
    ASSERT_EQ(::shutdown(c.c, SHUT_WR), 0);
    std::string reply;
    for (ssize_t n; (n = ::recv(c.a, buf, sizeof buf, 0)) > 0;) reply.append(buf, size_t(n));
    EXPECT_EQ(reply, "a:" + std::to_string(kToServer)) << p_->output();
    ASSERT_EQ(::send(c.b, "thanks", 6, MSG_NOSIGNAL), 6);
    ASSERT_EQ(::shutdown(c.b, SHUT_WR), 0);
    ASSERT_TRUE(wait_for_text(p_->dir() / "stdout", "DONE", p_->pid(), 10s)) << p_->output();
    EXPECT_EQ(::recv(c.e, buf, 5, MSG_WAITALL), 5);
    EXPECT_EQ(std::string(buf, 5), "e:eof");
    EXPECT_TRUE(p_->finish(20s));
  }

  std::unique_ptr<TestProcess> p_;
  int port_ = -1;
};

TEST_P(TcpHalfClosedTest, EachConnectionComesBackInItsStateWithNoByteLost) {
  Peer c;
  ASSERT_NO_FATAL_FAILURE(start(c));
  ASSERT_TRUE(p_->dump({"--tcp-established"}));
  EXPECT_TRUE(locked_port(port_)) << "no network lock for port " << port_;
  ASSERT_TRUE(p_->restore());
  EXPECT_FALSE(locked_port(port_)) << "the network lock stayed after the restore";
  EXPECT_EQ(states_wrong(c), "");
  finish(c);
}

TEST_P(TcpHalfClosedTest, LeaveRunningKeepsThemAsTheyWere) {
  Peer c;
  ASSERT_NO_FATAL_FAILURE(start(c));
  ASSERT_TRUE(p_->dump({"--tcp-established", "--leave-running"}));
  EXPECT_FALSE(locked_port(port_));
  EXPECT_EQ(states_wrong(c), "");
  finish(c);
}

INSTANTIATE_TEST_SUITE_P(Families, TcpHalfClosedTest, ::testing::Values(4, 6),
                         [](const auto& info) { return "IPv" + std::to_string(info.param); });

}  // namespace
}  // namespace e2e
