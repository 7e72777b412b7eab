// Real Debian servers dumped while serving and restored: after the restore they serve again and
// still do what a server's own machinery does (a master respawning a killed worker, a reload),
// which exercises the channels, signals and shared memory ckpt brought back.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "e2e_util.hpp"
#include "net_util.hpp"

namespace e2e {
namespace {

// Sends `request` to 127.0.0.1:port and returns all it answers ("" when nothing listens).
std::string ask(int port, const std::string& request) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{3, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::write(s, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(s, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(s);
  return out;
}

std::string http_get(int port) {
  return ask(port, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
}

// Retries `fn` until its answer contains `want` (a server starting or respawning a worker).
template <class Fn>
bool answers(Fn fn, const std::string& want, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fn().find(want) != std::string::npos) return true;
    sleep_for(50ms);
  }
  return false;
}

// Waits until the server holds no connection on `port`: it closes a finished one a moment after
// its client saw the answer, and an established connection is not something ckpt saves yet.
bool no_connections(int port, std::chrono::milliseconds timeout = 3s) {
  char local[16];
  std::snprintf(local, sizeof local, ":%04X", port);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    bool held = false;
    while (std::getline(tcp, line)) {
      std::istringstream f(line);
      std::string sl, local_addr, remote, state, queues, timer, retr, uid, timeout_field, inode;
      f >> sl >> local_addr >> remote >> state >> queues >> timer >> retr >> uid >> timeout_field >>
          inode;
      // A socket with inode 0 belongs to no process any more (TIME_WAIT, orphaned FIN_WAIT).
      if (local_addr.ends_with(local) && state != "0A" && inode != "0") held = true;
    }
    if (!held) return true;
    sleep_for(20ms);
  }
  return false;
}

std::vector<pid_t> children_named(pid_t parent, const std::string& cmdline_part) {
  std::vector<pid_t> out;
  for (pid_t c : descendants(parent)) {
    std::string cmd = read_text(fs::path("/proc") / std::to_string(c) / "cmdline");
    if (cmd.find(cmdline_part) != std::string::npos) out.push_back(c);
  }
  return out;
}

class ServerTest : public ::testing::Test {
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

  void start(std::vector<std::string> argv) {
    SpawnSpec spec;
    spec.argv = std::move(argv);
    spec.fds[0] = spec.fds[1] = spec.fds[2] = devnull_;
    spec.cwd = dir_.path();
    pid_ = spawn(spec);
  }

  // Dumps the server's tree (killing it), reaps it, restores it and checks every process came
  // back with its PID.
  void dump_and_restore(int port) {
    ASSERT_TRUE(no_connections(port));
    auto before = descendants(pid_);
    auto d = run_ckpt({"dump", "-t", std::to_string(pid_), "-D", (dir_ / "store").string()}, 30s);
    ASSERT_EQ(d.exit_code(), 0) << d.describe();
    wait_child(pid_, 5s);
    ASSERT_TRUE(reap_all(before, {}));
    auto r = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"}, 30s);
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    ASSERT_EQ(r.out, std::to_string(pid_) + "\n");
    EXPECT_EQ(descendants(pid_), before) << "the server's processes came back different";
  }

  TempDir dir_{"ckpt-server"};
  pid_t pid_ = -1;
  int devnull_ = -1;
};

// nginx as Debian runs it: a root master and two workers as www-data (epoll, an eventfd, socket
// pairs between master and workers, shared anonymous memory, a listening socket each inherits).
TEST_F(ServerTest, NginxServesAgainRespawnsAKilledWorkerAndReloads) {
  int port = free_port();
  fs::path conf = dir_ / "nginx.conf";
  std::ofstream(conf) << "user www-data;\nworker_processes 2;\ndaemon off;\nmaster_process on;\n"
                      << "pid " << (dir_ / "nginx.pid").string() << ";\n"
                      << "error_log " << (dir_ / "error.log").string() << " notice;\n"
                      << "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
                      << "  client_body_temp_path " << (dir_ / "body").string() << ";\n"
                      << "  server { listen 127.0.0.1:" << port
                      << "; location / { return 200 \"hello from nginx\\n\"; } }\n}\n";
  start({"/usr/sbin/nginx", "-c", conf.string(), "-p", dir_.path().string()});
  auto get = [&] { return http_get(port); };
  ASSERT_TRUE(answers(get, "hello from nginx")) << read_text(dir_ / "error.log");
  // One worker may answer before the other has forked and renamed itself.
  auto two_workers = [&] {
    return children_named(pid_, "worker process").size() == 2 ? std::string("2") : "";
  };
  ASSERT_TRUE(answers(two_workers, "2")) << read_text(dir_ / "error.log");

  dump_and_restore(port);
  EXPECT_TRUE(answers(get, "hello from nginx", 2s)) << read_text(dir_ / "error.log");

  // The master hears its worker die (SIGCHLD, its channels) and starts another.
  auto workers = children_named(pid_, "worker process");
  ASSERT_EQ(workers.size(), 2u);
  ::kill(workers[0], SIGKILL);
  bool respawned = false;
  for (int i = 0; i < 100 && !respawned; ++i) {
    sleep_for(50ms);
    auto now = children_named(pid_, "worker process");
    respawned = now.size() == 2 && std::find(now.begin(), now.end(), workers[0]) == now.end();
  }
  EXPECT_TRUE(respawned) << read_text(dir_ / "error.log");
  EXPECT_TRUE(answers(get, "hello from nginx")) << read_text(dir_ / "error.log");

  // A reload: the master rereads its configuration and replaces both workers.
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  EXPECT_TRUE(answers([&] { return read_text(dir_ / "error.log"); }, "reconfiguring"))
      << read_text(dir_ / "error.log");
  EXPECT_TRUE(answers(get, "hello from nginx")) << read_text(dir_ / "error.log");

  // A graceful stop ends the master with status 0.
  ASSERT_EQ(::kill(pid_, SIGQUIT), 0);
  auto st = wait_child(pid_, 10s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << read_text(dir_ / "error.log");
  pid_ = -1;
}

// memcached as Debian runs it (user memcache): threads around libevent (epoll), a listening socket;
// the data it holds must come back (a fresh start would have none), and it must go on changing it.
TEST_F(ServerTest, MemcachedKeepsItsDataAndGoesOnServing) {
  int port = free_port();
  start({"/usr/bin/memcached", "-u", "memcache", "-l", "127.0.0.1", "-p", std::to_string(port),
         "-U", "0", "-t", "4", "-m", "64"});
  auto stats = [&] { return ask(port, "stats\r\nquit\r\n"); };
  ASSERT_TRUE(answers(stats, "STAT pid"));
  ASSERT_EQ(ask(port, "set counter 0 0 2\r\n41\r\nquit\r\n"), "STORED\r\n");
  std::string big(100000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  ASSERT_EQ(ask(port, "set big 0 0 " + std::to_string(big.size()) + "\r\n" + big + "\r\nquit\r\n"),
            "STORED\r\n");

  dump_and_restore(port);
  EXPECT_EQ(ask(port, "incr counter 1\r\nquit\r\n"), "42\r\n");
  EXPECT_EQ(ask(port, "get big\r\nquit\r\n"),
            "VALUE big 0 " + std::to_string(big.size()) + "\r\n" + big + "\r\nEND\r\n");
  // Its threads all work: many connections at once.
  for (int i = 0; i < 20; ++i) ASSERT_NE(ask(port, "incr counter 1\r\nquit\r\n"), "");
  EXPECT_EQ(ask(port, "get counter\r\nquit\r\n"), "VALUE counter 0 2\r\n62\r\nEND\r\n");
}

// Node.js (libuv: epoll, an eventfd, a thread pool, signal pipes; V8's JIT) with a child forked
// through child_process.fork: each request is counted and doubled by the child over their IPC
// channel (a unix socketpair). The count must go on from the dump (a fresh start would say 1),
// and the channel must carry messages both ways after the restore.
TEST_F(ServerTest, NodeKeepsItsCountAndTalksToItsForkedChild) {
  int port = free_port();
  std::ofstream(dir_ / "server.js") << R"(
const http = require('http');
const { fork } = require('child_process');
if (process.argv[2] === 'child') {
  process.on('message', (n) => process.send(n * 2));
} else {
  const child = fork(__filename, ['child']);
  let requests = 0;
  http.createServer((req, res) => {
    requests++;
    child.once('message', (doubled) => res.end(`requests ${requests} doubled ${doubled}\n`));
    child.send(requests);
  }).listen()" << port << R"(, '127.0.0.1');
}
)";
  start({"/usr/bin/node", (dir_ / "server.js").string()});
  auto get = [&] { return http_get(port); };
  ASSERT_TRUE(answers(get, "requests 1 doubled 2", 10s));
  EXPECT_NE(get().find("requests 2 doubled 4"), std::string::npos);
  ASSERT_EQ(descendants(pid_).size(), 1u) << "the forked child is missing";

  dump_and_restore(port);
  EXPECT_NE(get().find("requests 3 doubled 6"), std::string::npos);
  EXPECT_NE(get().find("requests 4 doubled 8"), std::string::npos);
}

}  // namespace
}  // namespace e2e
