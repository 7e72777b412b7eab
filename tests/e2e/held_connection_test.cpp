// Real Debian servers dumped and restored with a client connection held open across it (the
// test is the client, outside the dumped tree): redis-server answers on the same connection with
// the data it held, nginx answers again on the same HTTP/1.1 keep-alive connection.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "e2e_util.hpp"
#include "net_util.hpp"

namespace e2e {
namespace {

class HeldConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    become_subreaper();
    devnull_ = open_or_die("/dev/null", O_RDWR);
  }
  void TearDown() override {
    if (conn_ >= 0) ::close(conn_);
    std::vector<pid_t> tree = pid_ > 0 ? descendants(pid_) : std::vector<pid_t>{};
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    for (pid_t p : tree) ::kill(p, SIGKILL);
    if (pid_ > 0) tree.push_back(pid_);
    EXPECT_TRUE(reap_all(tree, {}));
    ::close(devnull_);
  }
  void start(std::vector<std::string> argv) {
    SpawnSpec spec;
    spec.argv = std::move(argv);
    spec.fds[0] = spec.fds[1] = spec.fds[2] = devnull_;
    spec.cwd = dir_.path();
    pid_ = spawn(spec);
  }
  void dump_and_restore() {
    auto before = descendants(pid_);
    auto d = run_ckpt(
        {"dump", "--tcp-established", "-t", std::to_string(pid_), "-D", (dir_ / "store").string()},
        30s);
    ASSERT_EQ(d.exit_code(), 0) << d.describe();
    wait_child(pid_, 5s);
    ASSERT_TRUE(reap_all(before, {}));
    auto r = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"}, 30s);
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    ASSERT_EQ(r.out, std::to_string(pid_) + "\n");
  }

  TempDir dir_{"ckpt-held"};
  pid_t pid_ = -1;
  int devnull_ = -1;
  int conn_ = -1;
};

TEST_F(HeldConnectionTest, RedisAnswersOnTheSameConnection) {
  int port = free_port();
  start({"/usr/bin/redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save",
         "", "--appendonly", "no", "--daemonize", "no", "--dir", dir_.path().string(), "--logfile",
         (dir_ / "redis.log").string()});
  conn_ = connect_when_up(port);
  ASSERT_GE(conn_, 0);
  ASSERT_EQ(exchange(conn_, "SET greeting hello\r\n", "\r\n"), "+OK\r\n");
  ASSERT_EQ(exchange(conn_, "INCR counter\r\n", "\r\n"), ":1\r\n");
  ASSERT_NO_FATAL_FAILURE(dump_and_restore());
  EXPECT_EQ(exchange(conn_, "GET greeting\r\n", "hello\r\n"), "$5\r\nhello\r\n")
      << read_text(dir_ / "redis.log");
  EXPECT_EQ(exchange(conn_, "INCR counter\r\n", "\r\n"), ":2\r\n");
  // The same connection, not a new one the server happened to accept.
  EXPECT_NE(exchange(conn_, "CLIENT INFO\r\n", "cmd=").find("id=3 "), std::string::npos);
}

TEST_F(HeldConnectionTest, NginxAnswersOnTheSameKeepAliveConnection) {
  int port = free_port();
  fs::path conf = dir_ / "nginx.conf";
  std::ofstream(conf) << "user www-data;\nworker_processes 1;\ndaemon off;\nmaster_process on;\n"
                      << "pid " << (dir_ / "nginx.pid").string() << ";\n"
                      << "error_log " << (dir_ / "error.log").string() << " notice;\n"
                      << "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
                      << "  keepalive_timeout 300s;\n"
                      << "  client_body_temp_path " << (dir_ / "body").string() << ";\n"
                      << "  server { listen 127.0.0.1:" << port
                      << "; location / { return 200 \"hello from nginx\\n\"; } }\n}\n";
  start({"/usr/sbin/nginx", "-c", conf.string(), "-p", dir_.path().string()});
  conn_ = connect_when_up(port);
  ASSERT_GE(conn_, 0);
  std::string get = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  std::string first = exchange(conn_, get, "hello from nginx\n");
  ASSERT_NE(first.find("keep-alive"), std::string::npos) << first;
  ASSERT_NO_FATAL_FAILURE(dump_and_restore());
  std::string again = exchange(conn_, get, "hello from nginx\n");
  EXPECT_NE(again.find("HTTP/1.1 200"), std::string::npos)
      << again << read_text(dir_ / "error.log");
  EXPECT_NE(again.find("hello from nginx\n"), std::string::npos) << again;
}

}  // namespace
}  // namespace e2e
