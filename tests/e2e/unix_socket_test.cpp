// Unix sockets ckpt cannot save: a peer outside the dumped processes (without --ext-unix-sk), a
// connection waiting to be accepted whose client already sent data, a queue carrying file
// descriptors (SCM_RIGHTS) of which one is a socket, or an out-of-band byte. Each dump fails with
// one line naming the fd and what the socket is, and leaves every process running untraced, the
// socket still working. Then what is saved that used to be refused (a listener, a bound socket, a
// peer closed), and peers outside with --ext-unix-sk. Sockets inside the tree: ProgramTest
// tree_socketpair, unix_listen, unix_dgram.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

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
  expect_refused(
      p, kids[0],
      {"fd 10", "unix stream socket", fmt_pid("held by pid ", p.pid()) + " (unix_refusal)",
       "outside the dumped processes", "--ext-unix-sk"});
  EXPECT_TRUE(left_running_untraced(p.pid()));
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, FileDescriptorInFlight) {
  TestProcess p({program_path("unix_refusal"), "rights"});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  expect_refused(p, p.pid(),
                 {fmt_pid("pid ", kids[0]) + ": fd 10", "unix datagram socket", "with socket:[",
                  "(unix) in flight (SCM_RIGHTS)", "cannot save"});
  EXPECT_TRUE(left_running_untraced(kids[0]));
  // The child then takes the socket from the queue and reads through it: nothing lost.
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, TimerfdInFlightWithAPipe) {
  TestProcess p({program_path("unix_refusal"), "rights-timer"});
  ASSERT_TRUE(p.wait_ready());
  auto kids = descendants(p.pid());
  ASSERT_EQ(kids.size(), 1u);
  expect_refused(p, p.pid(),
                 {fmt_pid("pid ", kids[0]) + ": fd 10", "unix datagram socket",
                  "with anon_inode:[timerfd] (timerfd) in flight (SCM_RIGHTS)", "cannot save"});
  EXPECT_TRUE(left_running_untraced(kids[0]));
  // The child then takes both fds from the queue: the pipe's data and the timer's expiration.
  EXPECT_TRUE(p.finish());
}

TEST_F(UnixSocketRefusal, OutOfBandByteQueued) {
  TestProcess p({program_path("unix_refusal"), "oob"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, p.pid(), {"fd 10", "unix stream socket", "out-of-band data (MSG_OOB)"});
  EXPECT_TRUE(p.finish());  // the byte is still out of band, the data still there
}

TEST_F(UnixSocketRefusal, WaitingConnectionWithData) {
  TestProcess p({program_path("unix_refusal"), "waiting"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, p.pid(),
                 {"fd 10", "listening unix stream socket on @ckpt-e2e-waiting-",
                  "already sent data into it", "without accepting it"});
  EXPECT_TRUE(p.finish());  // accept() still returns the connection with its data
}

TEST_F(UnixSocketRefusal, WaitingConnectionOfAClosedClient) {
  TestProcess p({program_path("unix_refusal"), "waiting-closed"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(
      p, p.pid(),
      {"fd 10", "listening unix stream socket on @ckpt-e2e-waiting-", "whose client has closed"});
  EXPECT_TRUE(p.finish());
}

// Saved since named sockets are: each program checks its socket after the restore.
class UnixSocketSaved : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_P(UnixSocketSaved, DumpRestore) {
  TestProcess p({program_path("unix_refusal"), GetParam()});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
}

// listen: a listener on a path, connected to after the restore; bound: a datagram socket bound to
// an abstract name; closed: a stream whose peer closed, its data then end of file.
INSTANTIATE_TEST_SUITE_P(Modes, UnixSocketSaved, ::testing::Values("listen", "bound", "closed"));

// Closes its fd at the end of the test.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A socket bound by this test (outside the dumped processes) that the program connects to.
class OutsidePeer : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
  int bind_here(int type) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path().c_str());
    int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    if (type == SOCK_STREAM) {
      EXPECT_EQ(::listen(fd, 4), 0);
    }
    return fd;
  }
  std::string path() const { return (dir_.path() / "outside.sock").string(); }
  static std::string recv_text(int fd) {
    char buf[64];
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  static uint64_t socket_ino(pid_t pid, int fd) {
    struct stat st {};
    std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
    return ::stat(link.c_str(), &st) == 0 ? st.st_ino : 0;
  }
  TempDir dir_;
};

TEST_F(OutsidePeer, DatagramReconnectedByPathWithExtUnixSk) {
  Fd server(bind_here(SOCK_DGRAM));
  TestProcess p({program_path("unix_outside"), "dgram", path()});
  ASSERT_TRUE(p.wait_ready());
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  for (const std::string& piece : {fmt_pid("held by pid ", ::getpid()), path(),
                                   std::string("--ext-unix-sk"), std::string("fd 10")})
    EXPECT_NE(r.err.find(piece), std::string::npos) << "'" << piece << "' not in: " << r.err;
  EXPECT_EQ(recv_text(server.get()), "before");
  ASSERT_TRUE(p.dump({"--ext-unix-sk"}));
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish()) << p.output();
  EXPECT_EQ(recv_text(server.get()), "after");  // sent without an address: connected again
}

TEST_F(OutsidePeer, StreamNeedsInheritFd) {
  Fd listener(bind_here(SOCK_STREAM));
  TestProcess p({program_path("unix_outside"), "stream", path()});
  ASSERT_TRUE(p.wait_ready());
  Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(conn.get(), 0);
  uint64_t ino = socket_ino(p.pid(), 10);
  ASSERT_NE(ino, 0u);
  ASSERT_TRUE(p.dump({"--ext-unix-sk"}));
  std::string key = "socket:[" + std::to_string(ino) + "]";
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_NE(r.err.find("--inherit-fd fd[N]:" + key), std::string::npos) << r.err;
  // Handed a socket for it, the restored program talks through it.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Fd mine(sv[0]), theirs(sv[1]), null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  SpawnSpec spec;
  spec.argv = {ckpt_path(), "restore",      "-D",          p.store().string(),
               "--detach",  "--inherit-fd", "fd[0]:" + key};
  spec.fds[0] = theirs.get();
  spec.fds[1] = spec.fds[2] = null.get();
  pid_t restorer = spawn(spec);
  auto st = wait_child(restorer, 10s);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "restore with --inherit-fd failed";
  ASSERT_EQ(::send(mine.get(), "reply", 5, 0), 5);
  EXPECT_TRUE(p.finish()) << p.output();
  char buf[8] = "";
  EXPECT_EQ(::recv(mine.get(), buf, 5, MSG_DONTWAIT), 5);
  EXPECT_EQ(std::string(buf, 5), "after");
}

}  // namespace
}  // namespace e2e
