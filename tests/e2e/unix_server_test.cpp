// socat, unmodified, serving on a unix socket path (UNIX-LISTEN with fork, EXEC:cat for each
// connection), dumped with a client of this test connected, which is outside the dumped processes
// (--ext-unix-sk). The restore is refused until it is handed a socket for that connection
// (--inherit-fd, the key named in the refusal); then the restored connection's cat echoes through
// the handed-in socket, and new clients connect by the path and are echoed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <regex>

#include "e2e_util.hpp"

namespace e2e {
namespace {

// A connected unix stream socket with a receive timeout, -1 when nothing listens at `path`.
int connect_to(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return s;
  ::close(s);
  return -1;
}

// Sends `line` and returns what comes back, up to as many bytes.
std::string echo(int fd, const std::string& line) {
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return "send: " + std::string(strerror(errno));
  std::string got;
  char buf[256];
  while (got.size() < line.size()) {
    ssize_t n = ::recv(fd, buf, std::min(sizeof buf, line.size() - got.size()), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

class UnixServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    become_subreaper();
    devnull_ = open_or_die("/dev/null", O_RDWR);
  }
  void TearDown() override {
    std::vector<pid_t> tree = pid_ > 0 ? descendants(pid_) : std::vector<pid_t>{};
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    for (pid_t p : tree) ::kill(p, SIGKILL);
    if (pid_ > 0) tree.push_back(pid_);
    EXPECT_TRUE(reap_all(tree, {}));
    ::close(devnull_);
  }

  TempDir dir_{"ckpt-unix-server"};
  pid_t pid_ = -1;
  int devnull_ = -1;
};

TEST_F(UnixServerTest, SocatEchoesThroughAHandedInConnectionAndOnItsPath) {
  std::string path = (dir_.path() / "echo.sock").string();
  SpawnSpec spec;
  spec.argv = {"/usr/bin/socat", "UNIX-LISTEN:" + path + ",fork", "EXEC:cat"};
  spec.fds[0] = spec.fds[1] = spec.fds[2] = devnull_;
  pid_ = spawn(spec);
  int client = -1;
  for (int i = 0; i < 500 && client < 0; ++i) {
    client = connect_to(path);
    if (client < 0) sleep_for(10ms);
  }
  ASSERT_GE(client, 0) << "socat does not listen on " << path;
  EXPECT_EQ(echo(client, "one\n"), "one\n");

  auto before = descendants(pid_);
  auto refused = run_ckpt({"dump", "-t", std::to_string(pid_), "-D", (dir_ / "store").string()});
  EXPECT_EQ(refused.exit_code(), 1) << refused.describe();
  EXPECT_NE(refused.err.find("held by pid " + std::to_string(::getpid())), std::string::npos)
      << refused.err;
  EXPECT_EQ(echo(client, "still\n"), "still\n");  // the refused dump left socat serving

  auto d = run_ckpt(
      {"dump", "-t", std::to_string(pid_), "-D", (dir_ / "store").string(), "--ext-unix-sk"}, 30s);
  ASSERT_EQ(d.exit_code(), 0) << d.describe();
  wait_child(pid_, 5s);
  ASSERT_TRUE(reap_all(before, {}));
  ::close(client);

  auto r = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"}, 30s);
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  std::smatch key;
  ASSERT_TRUE(std::regex_search(r.err, key, std::regex(R"(--inherit-fd fd\[N\]:(socket:\[\d+\]))")))
      << r.err;

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  SpawnSpec restore;
  restore.argv = {ckpt_path(),
                  "restore",
                  "-D",
                  (dir_ / "store").string(),
                  "--detach",
                  "--inherit-fd",
                  "fd[0]:" + key[1].str()};
  restore.fds[0] = sv[1];
  restore.fds[1] = restore.fds[2] = devnull_;
  pid_t restorer = spawn(restore);
  auto st = wait_child(restorer, 30s);
  ::close(sv[1]);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "restore with --inherit-fd failed";
  EXPECT_EQ(descendants(pid_), before) << "socat's processes came back different";
  timeval tv{5, 0};
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_EQ(echo(sv[0], "two\n"), "two\n");
  ::close(sv[0]);

  int fresh = connect_to(path);
  ASSERT_GE(fresh, 0) << "the restored socat does not listen on " << path;
  EXPECT_EQ(echo(fresh, "three\n"), "three\n");
  ::close(fresh);
}

}  // namespace
}  // namespace e2e
