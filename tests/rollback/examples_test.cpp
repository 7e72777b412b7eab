// The examples of examples/rollback/: the paper's two sample programs and the line server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rb_harness.hpp"

namespace rbtest {
namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// A program on a pseudo-terminal, as a user runs it: stdout line-buffered, input a line at a
// time.
class PtyChild {
 public:
  explicit PtyChild(const std::string& path) {
    master_ = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || grantpt(master_) || unlockpt(master_)) return;
    std::string slave = ptsname(master_);
    pid_ = fork();
    if (pid_ == 0) {
      setsid();
      int s = open(slave.c_str(), O_RDWR);
      if (s < 0) _exit(126);
      dup2(s, 0);
      dup2(s, 1);
      dup2(s, 2);
      execl(path.c_str(), path.c_str(), nullptr);
      _exit(127);
    }
  }
  ~PtyChild() {
    if (pid_ > 0 && !done_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) close(master_);
  }
  bool wait_for(const std::string& text, size_t times) {
    auto deadline = Clock::now() + 60s;
    while (count(out_, text) < times) {
      pollfd p{master_, POLLIN, 0};
      if (Clock::now() > deadline || poll(&p, 1, 1000) < 0) return false;
      char buf[1024];
      ssize_t n = p.revents ? read(master_, buf, sizeof buf) : 0;
      if (n < 0) return false;  // EIO: the program ended and closed the terminal
      out_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  bool type(const std::string& s) {
    return write(master_, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  }
  int finish() {
    int st = 0;
    waitpid(pid_, &st, 0);
    done_ = true;
    return st;
  }
  const std::string& out() const { return out_; }
  pid_t pid() const { return pid_; }

 private:
  int master_ = -1;
  pid_t pid_ = -1;
  bool done_ = false;
  std::string out_;
};

// The paper's SIGSEGV sample: every 'y' corrupts the program and brings the question back.
TEST(RollbackExamples, PaperSegvAsksAgainAfterEachCrash) {
  const std::string q = "do you want to corrupt the program";
  PtyChild c(RB_PAPER_SEGV);
  ASSERT_GT(c.pid(), 0);
  ASSERT_TRUE(c.wait_for(q, 1)) << c.out();
  ASSERT_TRUE(c.type("y\n"));
  ASSERT_TRUE(c.wait_for(q, 2)) << c.out();
  ASSERT_TRUE(c.type("y\n"));
  ASSERT_TRUE(c.wait_for(q, 3)) << c.out();
  ASSERT_TRUE(c.type("n\n"));
  ASSERT_TRUE(c.wait_for("continuing after 2 recoveries", 1)) << c.out();
  int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe(st) << c.out();
}

// A listening socket on 127.0.0.1 with an ephemeral port.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd_, 4) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }
  int accept_one() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 30000) <= 0) return -1;
    return accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Line-at-a-time client of a connected socket.
class LineConn {
 public:
  explicit LineConn(int fd) : fd_(fd) {}
  LineConn(const LineConn&) = delete;
  LineConn& operator=(const LineConn&) = delete;
  ~LineConn() {
    if (fd_ >= 0) close(fd_);
  }
  static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
      close(fd);
      return -1;
    }
    return fd;
  }
  bool send(const std::string& line) {
    std::string s = line + "\n";
    return write(fd_, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  }
  // The next line, "" at EOF or after 30 s.
  std::string line() {
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 30000) <= 0) return "";
      char b[4096];
      ssize_t n = read(fd_, b, sizeof b);
      if (n <= 0) return "";
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  std::string ask(const std::string& request) { return send(request) ? line() : ""; }
  void shut() { shutdown(fd_, SHUT_WR); }

 private:
  int fd_;
  std::string buf_;
};

// The paper's socket loop: a record that makes it copy out of bounds costs that record only.
TEST(RollbackExamples, PaperSocketLoopRecovers) {
  Listener l;
  ASSERT_GT(l.port(), 0);
  Child prog({RB_PAPER_SOCKET, std::to_string(l.port())});
  ASSERT_GT(prog.pid(), 0);
  int fd = l.accept_one();
  ASSERT_GE(fd, 0) << prog.err();
  LineConn conn(fd);
  long n = 0;
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(conn.ask("5 name" + std::to_string(i) + " " + std::to_string(i)),
              "ok " + std::to_string(++n));
  ASSERT_EQ(conn.ask("100000000 evil 1"), "recovered") << prog.err();
  for (int i = 5; i < 10; ++i)
    ASSERT_EQ(conn.ask("5 name" + std::to_string(i) + " " + std::to_string(i)),
              "ok " + std::to_string(++n));
  conn.shut();
  int st = prog.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe(st) << prog.err();
  EXPECT_NE(prog.out().find("records 10 recoveries 1"), std::string::npos) << prog.out();
}

std::string evil_hello(int i) {
  return "HELLO " + std::string(200, 'A') + std::to_string(i);
}

struct ServerRun {
  Child server;
  int port = 0;
  explicit ServerRun(std::vector<std::string> args) : server(args) {
    if (server.wait_for("listening ", 30s) && server.wait_for("\n", 5s))
      port = std::atoi(server.out().c_str() + server.out().find("listening ") + 10);
  }
};

// 1000 requests from 5 concurrent clients, 100 of them malicious (each different): every good
// request is answered correctly, every malicious one rejected, the server is the same process
// throughout, and it counts 100 recoveries. A malicious line sent again is rejected unrun.
TEST(RollbackExamples, LineServerSurvivesMaliciousRequests) {
  ServerRun run({RB_LINE_SERVER});
  ASSERT_GT(run.port, 0) << run.server.out() << run.server.err();
  constexpr int kClients = 5, kPerClient = 200, kEvilEvery = 10;
  std::atomic<int> good_ok{0}, evil_rejected{0}, wrong{0};
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      LineConn conn(LineConn::connect_to(run.port));
      std::map<std::string, long> mine;
      std::mt19937 rng(static_cast<unsigned>(c));
      for (int i = 0; i < kPerClient; ++i) {
        if (i % kEvilEvery == kEvilEvery - 1) {
          std::string r = conn.ask(evil_hello(c * kPerClient + i));
          if (r == "ERR rejected") {
            ++evil_rejected;
          } else {
            ++wrong;
            errors[c] += "evil request answered '" + r + "'\n";
          }
          continue;
        }
        std::string key = "c" + std::to_string(c) + "k" + std::to_string(rng() % 20);
        std::string expect, got;
        switch (rng() % 3) {
          case 0: {
            long v = static_cast<long>(rng() % 1000);
            got = conn.ask("SET " + key + " " + std::to_string(v));
            mine[key] = v;
            expect = "OK";
            break;
          }
          case 1:
            got = conn.ask("GET " + key);
            expect = mine.count(key) ? "VALUE " + std::to_string(mine[key]) : "NONE";
            break;
          default: {
            long d = static_cast<long>(rng() % 10);
            got = conn.ask("ADD " + key + " " + std::to_string(d));
            mine[key] += d;
            expect = "VALUE " + std::to_string(mine[key]);
          }
        }
        if (got == expect) {
          ++good_ok;
        } else {
          ++wrong;
          errors[c] += "expected '" + expect + "', got '" + got + "'\n";
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  for (auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(good_ok, kClients * kPerClient * 9 / 10);
  EXPECT_EQ(evil_rejected, kClients * kPerClient / 10);
  LineConn conn(LineConn::connect_to(run.port));
  EXPECT_EQ(conn.ask(evil_hello(9)), "ERR rejected");  // known bad: not run again
  std::string stats = conn.ask("STATS");
  EXPECT_NE(stats.find("recoveries=100 "), std::string::npos) << stats;
  EXPECT_NE(stats.find("bad=100 "), std::string::npos) << stats;
  EXPECT_NE(stats.find("rejected=101 "), std::string::npos) << stats;
  EXPECT_NE(stats.find("served=900 "), std::string::npos) << stats;
  std::string pid = "pid=" + std::to_string(run.server.pid());
  EXPECT_EQ(stats.substr(stats.size() - std::min(stats.size(), pid.size())), pid) << stats;
  EXPECT_EQ(conn.ask("HELLO world"), "HELLO world (1)");
  EXPECT_EQ(count(run.server.out(), "listening "), 1u) << "the server started again";
  kill(run.server.pid(), SIGTERM);
  run.server.finish();
}

// With --retry the server runs a crashing request again, until the crash-loop report (the same
// state, the same signal, 3 times in a row) makes it drop the request.
TEST(RollbackExamples, LineServerCrashLoopReport) {
  ServerRun run({RB_LINE_SERVER, "--retry"});
  ASSERT_GT(run.port, 0) << run.server.out() << run.server.err();
  LineConn conn(LineConn::connect_to(run.port));
  EXPECT_EQ(conn.ask("SET a 1"), "OK");
  EXPECT_EQ(conn.ask(evil_hello(1)), "ERR rejected");
  EXPECT_TRUE(run.server.wait_for("crash loop: state ", 10s)) << run.server.out();
  EXPECT_NE(run.server.out().find(" signal 11 count 3\n"), std::string::npos) << run.server.out();
  EXPECT_EQ(conn.ask("GET a"), "VALUE 1");
  std::string stats = conn.ask("STATS");
  EXPECT_NE(stats.find("recoveries=3 "), std::string::npos) << stats;
  EXPECT_NE(stats.find("crash_loops=1 "), std::string::npos) << stats;
  EXPECT_EQ(conn.ask(evil_hello(1)), "ERR rejected");
  EXPECT_NE(conn.ask("STATS").find("recoveries=3 "), std::string::npos);
  kill(run.server.pid(), SIGTERM);
  run.server.finish();
}

}  // namespace
}  // namespace rbtest
