// A server under `ckpt run` with a client connected: checkpoints save its connections to come
// back closed (--tcp-close; without it every checkpoint would fail while a client is connected),
// and after a crash it comes back from one, drops the old client by itself and serves new ones.
// The server is an unmodified python3 program (a selectors event loop, SO_REUSEADDR as servers
// set it) that numbers its answers: a fresh start would begin again at 1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <fstream>

#include "support/tcp_ask.hpp"
#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

constexpr const char* kServer = R"(import selectors, socket, sys
count = 0
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(8)
l.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(l, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is l:
            c, _ = l.accept()
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(512)
        except OSError as e:
            print("CLOSED", e.strerror, flush=True)
            data = None
        if not data:
            sel.unregister(s)
            s.close()
            continue
        count += 1
        s.sendall(b"echo:" + data + b" #" + str(count).encode())
)";

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), len);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

int connect_to(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return s;
  ::close(s);
  return -1;
}

using ckpt::test_support::ask;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

TEST(SupervisorServer, AServerWithAClientIsCheckpointedAndRecoveredWithItsConnectionClosed) {
  TempDir d;
  auto script = d.path() / "server.py";
  std::ofstream(script) << kServer;
  auto store = d.path() / "store";
  int port = free_port();
  Proc sv(d.path(), {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0.3", "--min-uptime",
                     "0.2", "--", "/usr/bin/python3", script, std::to_string(port)});
  // A failed assertion kills the supervisor (Proc), whose program would run on (it is left for
  // --resume): the server goes first.
  struct KillServer {
    Proc& sv;
    fs::path store;
    ~KillServer() {
      pid_t child = run_state(store).value("child_pid", 0);
      if (sv.running() && child > 0) ::kill(child, SIGKILL);
    }
  } kill_server{sv, store};
  Fd a;
  ASSERT_TRUE(eventually([&] { return (a.fd = connect_to(port)) >= 0; })) << sv.err();
  ASSERT_EQ(ask(a.fd, "a1"), "echo:a1 #1");
  ASSERT_EQ(ask(a.fd, "a2"), "echo:a2 #2");
  // Two more checkpoints: the second began after the answers, with the client connected.
  long before = run_state(store).value("checkpoints", 0L);
  ASSERT_TRUE(eventually([&] { return run_state(store).value("checkpoints", 0L) >= before + 2; }))
      << sv.err();
  EXPECT_EQ(sv.err().find("checkpoint failed"), std::string::npos) << sv.err();
  ASSERT_TRUE(signal_child(store, SIGKILL));
  // The crash ends the connection; the recovered server answers a new client, counting on.
  EXPECT_NE(ask(a.fd, "a3").rfind("echo:", 0), 0u);
  // A client reconnects until a server answers (one that connects while the killed server's
  // listener is still closing is reset).
  ASSERT_TRUE(eventually([&] { return sv.err().find("crash: killed") != std::string::npos; }))
      << sv.err();
  std::string answer;
  ASSERT_TRUE(eventually([&] {
    Fd b{connect_to(port)};
    answer = b.fd < 0 ? "" : ask(b.fd, "b1");
    return answer.rfind("echo:", 0) == 0;
  })) << answer
      << "\n"
      << sv.err();
  EXPECT_EQ(answer, "echo:b1 #3") << sv.err();
  EXPECT_TRUE(eventually([&] {
    return sv.err().find("recovered from generation") != std::string::npos;
  })) << sv.err();
  // The old client's socket came back closed, and the server dropped it by itself.
  EXPECT_TRUE(eventually([&] { return sv.out().find("CLOSED") != std::string::npos; })) << sv.out();
  ::kill(sv.pid(), SIGTERM);
  EXPECT_NE(sv.wait(), -1);
}

// The supervisor dies (SIGKILL) and leaves its server running with a client; `ckpt run --resume`
// takes the server over (a dump that kills it, a restore) with its connection as it was: the
// same client on the same connection goes on, its next answer numbered on.
TEST(SupervisorServer, ResumeTakesOverALiveServerWithItsClientsConnection) {
  TempDir d;
  auto script = d.path() / "server.py";
  std::ofstream(script) << kServer;
  auto store = d.path() / "store";
  int port = free_port();
  auto first = d.path() / "first";
  fs::create_directories(first);
  Proc sv(first, {CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0", "--", "/usr/bin/python3",
                  script, std::to_string(port)});
  Fd a;
  ASSERT_TRUE(eventually([&] { return (a.fd = connect_to(port)) >= 0; })) << sv.err();
  ASSERT_EQ(ask(a.fd, "a1"), "echo:a1 #1");
  pid_t server = run_state(store).value("child_pid", 0);
  ASSERT_GT(server, 0);
  // Whatever fails below, the orphaned server does not outlive the test.
  struct KillServer {
    pid_t pid;
    ~KillServer() {
      if (slurp("/proc/" + std::to_string(pid) + "/cmdline").find("server.py") != std::string::npos)
        ::kill(pid, SIGKILL);
    }
  } kill_server{server};
  ::kill(sv.pid(), SIGKILL);
  ASSERT_NE(sv.wait(), -1);
  ASSERT_EQ(ask(a.fd, "a2"), "echo:a2 #2") << "the server runs on unsupervised";
  Proc resumed(d.path(), {CKPT_CLI_PATH, "run", "--resume", "--dir", store});
  ASSERT_TRUE(eventually([&] { return resumed.err().find("took over pid") != std::string::npos; }))
      << resumed.err();
  EXPECT_EQ(ask(a.fd, "a3"), "echo:a3 #3") << resumed.err();
  EXPECT_EQ(run_state(store).value("child_pid", 0), server);
  ::kill(resumed.pid(), SIGTERM);
  EXPECT_NE(resumed.wait(), -1);
}

}  // namespace
}  // namespace ckpt::test
