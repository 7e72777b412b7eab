#include "resources/fds/tcp_guard.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/child_process.hpp"
#include "common/guard_process.hpp"
#include "common/log.hpp"

namespace ckpt::fds {
namespace {

// One message of the dumper: a connection with its socket attached, or the word to go.
struct Message {
  char what = 0;  // 'W' watch (an fd comes with it), 'D' done
  bool v6 = false;
  uint8_t local[16] = {}, peer[16] = {};
  uint16_t local_port = 0, peer_port = 0;
};

Message to_message(const netlock::Connection& c) {
  Message m;
  m.what = 'W';
  m.v6 = c.v6;
  std::memcpy(m.local, c.local.data(), std::min<size_t>(c.local.size(), 16));
  std::memcpy(m.peer, c.peer.data(), std::min<size_t>(c.peer.size(), 16));
  m.local_port = c.local_port;
  m.peer_port = c.peer_port;
  return m;
}

netlock::Connection from_message(const Message& m) {
  netlock::Connection c;
  c.v6 = m.v6;
  size_t n = m.v6 ? 16 : 4;
  c.local.assign(m.local, m.local + n);
  c.peer.assign(m.peer, m.peer + n);
  c.local_port = m.local_port;
  c.peer_port = m.peer_port;
  return c;
}

// Receives one message and the fd that may come with it (-1 if none); 0 at end of file.
ssize_t receive(int channel, Message& m, int& fd) {
  return receive_with_fd(channel, &m, sizeof m, &fd);
}

struct Watched {
  int sock;
  netlock::Connection conn;
};

// What release() does in the dump, done by the guard for a dumper that is gone.
void undo(const std::vector<Watched>& watched) {
  for (auto& w : watched) {
    int off = TCP_REPAIR_OFF;
    (void)::setsockopt(w.sock, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
    Status st = netlock::unlock(w.conn);
    if (!st.ok())
      log::error("dump", "guard: {}", st.error().message);
    else
      log::warn("dump", "the dumper died: TCP {} given back", netlock::text(w.conn));
  }
}

[[noreturn]] void guard_main(int channel) {
  std::vector<Watched> watched;
  for (;;) {
    Message m;
    int fd = -1;
    ssize_t n = receive(channel, m, fd);
    if (n == static_cast<ssize_t>(sizeof m) && m.what == 'W' && fd >= 0) {
      watched.push_back({fd, from_message(m)});
      continue;
    }
    if (fd >= 0) ::close(fd);
    if (n == static_cast<ssize_t>(sizeof m) && m.what == 'D') ::_exit(0);
    // End of file, or an error reading: the dumper is gone.
    undo(watched);
    ::_exit(0);
  }
}

}  // namespace

Status TcpGuard::start() {
  CKPT_TRY_ASSIGN(GuardProcess g, fork_guard("TCP guard", guard_main));
  pid_ = g.pid;
  channel_ = std::move(g.channel);
  return {};
}

Status TcpGuard::watch(int sock, const netlock::Connection& c) {
  if (pid_ < 0) CKPT_TRY(start());
  Message m = to_message(c);
  return send_with_fds(channel_.get(), &m, sizeof m, std::span(&sock, 1),
                       fmt::format("hand TCP {} to the guard", netlock::text(c)));
}

void TcpGuard::stand_down() {
  if (pid_ < 0) return;
  Message m;
  m.what = 'D';
  ssize_t sent;
  while ((sent = ::send(channel_.get(), &m, sizeof m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  // Without the word, closing the channel would make the guard undo what the dumper decided
  // (a kill-mode dump keeps its connections locked for the restore): it is killed instead.
  if (sent != static_cast<ssize_t>(sizeof m)) {
    log::warn("dump", "TCP guard {}: {}; killed", pid_, std::strerror(errno));
    ::kill(pid_, SIGKILL);
  }
  channel_.reset();
  (void)wait_end(pid_);
  pid_ = -1;
}

}  // namespace ckpt::fds
