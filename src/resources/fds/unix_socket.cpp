// Unix socket pairs (socketpair(): stream, datagram or seqpacket) whose two ends are both held by
// the dumped processes. Dump asks the kernel (sock_diag, UNIX_DIAG) for each socket's peer, name
// and shutdown state and copies what waits in its receive queue without taking it (MSG_PEEK
// stepped by SO_PEEK_OFF, datagrams one by one); restore makes one socketpair per pair in the
// restorer and writes each queue back through the other end. Named or listening sockets, a peer
// outside the dumped processes or already closed, file descriptors in flight and credentials
// attached to queued data are refused, naming the fd.
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/unix_diag.hpp"

namespace ckpt::fds {
namespace {

using unix_diag::DiagInfo;
using unix_diag::type_name;

constexpr int kTcpListen = 10;
constexpr int kRcvShutdown = 1;
constexpr int kSendShutdown = 2;

struct UnixEnd {
  uint64_t ino = 0, peer = 0;
  int32_t sock_type = 0, shutdown = 0;
  bool passcred = false;
  int32_t peek_off = -1, sndbuf = 0, rcvbuf = 0;
  std::vector<schema::Bytes> queue;  // a stream's bytes as one item; datagrams one item each
  template <class V>
  void visit(V& v) {
    v("ino", ino), v("peer", peer), v("sock_type", sock_type), v("shutdown", shutdown);
    v("passcred", passcred), v("peek_off", peek_off), v("sndbuf", sndbuf), v("rcvbuf", rcvbuf);
    v("queue", queue);
  }
};

// Restores the socket's peek offset when the peeking is over, whatever happened.
class PeekOffset {
 public:
  explicit PeekOffset(int sock) : sock_(sock) {
    socklen_t len = sizeof(saved_);
    if (::getsockopt(sock_, SOL_SOCKET, SO_PEEK_OFF, &saved_, &len) < 0) saved_ = -1;
  }
  ~PeekOffset() { set(saved_); }
  PeekOffset(const PeekOffset&) = delete;
  PeekOffset& operator=(const PeekOffset&) = delete;
  bool set(int off) { return ::setsockopt(sock_, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) == 0; }

 private:
  int sock_;
  int saved_ = -1;
};

struct Peeked {
  ssize_t len = 0;  // the whole message's length (MSG_TRUNC), or the bytes of a stream chunk
  bool rights = false;
};

// Closes whatever file descriptors a peek passed to us along with the data.
bool close_passed_fds(msghdr& m) {
  bool rights = (m.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    rights = true;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      ::close(passed);
    }
  }
  return rights;
}

Result<Peeked> peek_once(int sock, std::string& buf) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64) + CMSG_SPACE(sizeof(ucred))];
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  ssize_t n = ::recvmsg(sock, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
  if (n < 0) return sys_error("recvmsg MSG_PEEK");
  return Peeked{n, close_passed_fds(m)};
}

// Everything in the socket's receive queue, left in place: stream data as one string, datagrams
// and seqpacket records one string each. SO_PEEK_OFF makes each MSG_PEEK continue where the
// last one stopped; for datagrams it skips whole messages, and an empty datagram once peeked is
// skipped by the next peek at the same offset. That mark stays: an empty datagram that was
// peeked before (by the program, or by an earlier --leave-running dump) is skipped by every
// later peek at an offset, and is not saved (a known gap; the kernel offers no other way to read
// the queue without taking it).
struct Queue {
  std::vector<std::string> items;
  bool rights = false;  // file descriptors in flight: what was read is incomplete
};

Result<Queue> peek_queue(int sock, int type, int shutdown) {
  PeekOffset offset(sock);
  if (!offset.set(0)) return sys_error("setsockopt SO_PEEK_OFF");
  Queue q;
  auto& out = q.items;
  std::string buf(65536, '\0');
  int at = 0;
  for (;;) {
    auto got = peek_once(sock, buf);
    if (!got.ok()) {
      if (got.error().errnum == EAGAIN) break;
      return got.error();
    }
    if (got->rights) {
      q.rights = true;
      return q;
    }
    size_t len = static_cast<size_t>(got->len);
    if (type == SOCK_STREAM) {
      if (len == 0) break;  // shut down for reading and nothing left
      if (out.empty()) out.emplace_back();
      out[0].append(buf.data(), len);
      at += static_cast<int>(len);
      continue;
    }
    // A datagram socket shut down for reading answers 0 once its queue is empty.
    if (len == 0 && (shutdown & kRcvShutdown)) break;
    if (len > buf.size()) {  // truncated: peek the same message again with room for all of it
      buf.resize(len);
      if (!offset.set(at)) return sys_error("setsockopt SO_PEEK_OFF");
      continue;
    }
    out.emplace_back(buf.data(), len);
    at += static_cast<int>(len);
  }
  return q;
}

// A stream's out-of-band byte (MSG_OOB) shows up inline in a peek with SO_PEEK_OFF: saved so, it
// would come back as ordinary data. A peek with MSG_OOB finds it. For stream and seqpacket
// sockets SIOCINQ counts every byte queued: what the peeks returned must add up to it.
Status check_all_read(pid_t pid, int fd, int sock, int type, const Queue& q,
                      const std::string& kind) {
  if (type != SOCK_STREAM && type != SOCK_SEQPACKET) return {};
  char urgent;
  if (type == SOCK_STREAM && ::recv(sock, &urgent, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) == 1)
    return errorf(
        "pid {}: fd {} is {} with out-of-band data (MSG_OOB) queued, which ckpt cannot "
        "save",
        pid, fd, kind);
  int queued = 0;
  if (::ioctl(sock, SIOCINQ, &queued) < 0)
    return sys_error(fmt::format("pid {}: fd {}: SIOCINQ", pid, fd));
  size_t peeked = 0;
  for (auto& item : q.items) peeked += item.size();
  if (peeked != static_cast<size_t>(queued))
    return errorf(
        "pid {}: fd {} is {} with {} bytes queued of which {} could be read ahead, which ckpt "
        "cannot save",
        pid, fd, kind, queued, peeked);
  return {};
}

// A connected socket's peer name: nonempty when it was bound (a server's socket).
std::string peer_name(int sock) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return "";
  size_t path_len =
      len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
  return unix_diag::printable_name(std::string_view(addr.sun_path, path_len));
}

// Why a socket cannot be saved, or "" when it is one end of a pair ckpt can recreate.
std::string refusal(const DiagInfo& d, int sock) {
  std::string kind = fmt::format("a unix {} socket", type_name(d.type));
  if (d.state == kTcpListen)
    return fmt::format("a listening unix {} socket on {}", type_name(d.type), d.name);
  if (!d.name.empty()) return fmt::format("{} bound to {}", kind, d.name);
  if (std::string peer = peer_name(sock); !peer.empty())
    return fmt::format("{} connected to {}", kind, peer);
  if (!d.peer) return fmt::format("an unconnected unix {} socket", type_name(d.type));
  if (*d.peer == 0) return fmt::format("{} whose peer has been closed", kind);
  if (d.type != SOCK_STREAM && d.type != SOCK_DGRAM && d.type != SOCK_SEQPACKET) return kind;
  return "";
}

Result<UnixEnd> describe(pid_t pid, int fd, int sock, const DiagInfo& d) {
  std::string kind = fmt::format("a unix {} socket", type_name(d.type));
  auto queue = peek_queue(sock, d.type, d.shutdown);
  if (!queue.ok())
    return queue.error().wrap(fmt::format("pid {}: fd {}: read the queue of {}", pid, fd, kind));
  if (queue->rights)
    return errorf(
        "pid {}: fd {} is {} with file descriptors in flight (SCM_RIGHTS) in its queue, which "
        "ckpt cannot save",
        pid, fd, kind);
  CKPT_TRY(check_all_read(pid, fd, sock, d.type, *queue, kind));
  int passcred = int_sockopt(sock, SOL_SOCKET, SO_PASSCRED);
  if (passcred > 0 && !queue->items.empty())
    return errorf(
        "pid {}: fd {} is {} with SO_PASSCRED and data queued, whose senders' credentials ckpt "
        "cannot save",
        pid, fd, kind);
  UnixEnd e;
  e.ino = d.ino, e.peer = *d.peer, e.sock_type = d.type, e.shutdown = d.shutdown;
  e.passcred = passcred > 0;
  e.peek_off = int_sockopt(sock, SOL_SOCKET, SO_PEEK_OFF);
  e.sndbuf = int_sockopt(sock, SOL_SOCKET, SO_SNDBUF);
  e.rcvbuf = int_sockopt(sock, SOL_SOCKET, SO_RCVBUF);
  for (auto& item : queue->items) e.queue.emplace_back(item.begin(), item.end());
  return e;
}

// Sets a buffer size the way the dumped socket had it (getsockopt shows twice what was asked).
void set_buffer(int sock, int force_opt, int opt, int want) {
  if (want <= 0 || int_sockopt(sock, SOL_SOCKET, opt) == want) return;
  int half = want / 2;
  if (::setsockopt(sock, SOL_SOCKET, force_opt, &half, sizeof(half)) < 0)
    (void)::setsockopt(sock, SOL_SOCKET, opt, &half, sizeof(half));
}

// Writes what `to` had queued through its peer `from`: the receive queue fills again in order.
Status refill_queue(int from, const UnixEnd& to) {
  for (auto& item : to.queue) {
    size_t done = 0;
    do {
      ssize_t n = ::send(from, item.data() + done, item.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0)
        return sys_error(
            fmt::format("refill the queue of socket:[{}] ({} bytes)", to.ino, item.size()));
      done += static_cast<size_t>(n);
    } while (done < item.size() && to.sock_type == SOCK_STREAM);
  }
  return {};
}

Status finish_end(int sock, const UnixEnd& e, uint32_t flags) {
  int how = e.shutdown & (kRcvShutdown | kSendShutdown);
  if (how != 0) {
    int shut = how == (kRcvShutdown | kSendShutdown) ? SHUT_RDWR
               : how == kRcvShutdown                 ? SHUT_RD
                                                     : SHUT_WR;
    if (::shutdown(sock, shut) < 0) return sys_error("shutdown");
  }
  int on = e.passcred ? 1 : 0;
  if (on && ::setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0)
    return sys_error("setsockopt SO_PASSCRED");
  int off = e.peek_off;
  if (off >= 0 && ::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
    return sys_error("setsockopt SO_PEEK_OFF");
  return set_status_flags(sock, flags, "unix socket");
}

using End = std::pair<const schema::OpenFile*, UnixEnd>;

Status make_pair(const End& a, const End& b, OpenedFiles& out) {
  int type = a.second.sock_type;
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
    return sys_error(fmt::format("socketpair for socket:[{}]", a.second.ino));
  ScopedFd fa(sv[0]), fb(sv[1]);
  for (auto [fd, e] : {std::pair{fa.get(), &a.second}, std::pair{fb.get(), &b.second}}) {
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, e->sndbuf);
    set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, e->rcvbuf);
  }
  // Every queue is refilled before any shutdown: a shut-down end takes no more data.
  CKPT_TRY(refill_queue(fb.get(), a.second));
  CKPT_TRY(refill_queue(fa.get(), b.second));
  CKPT_TRY(finish_end(fa.get(), a.second, a.first->flags));
  CKPT_TRY(finish_end(fb.get(), b.second, b.first->flags));
  out[a.first->id] = std::move(fa);
  out[b.first->id] = std::move(fb);
  return {};
}

std::string holder_text(const LinkedFile& f, const UnixEnd& e) {
  const Holder& h = f.holders.front();
  return fmt::format("pid {}: fd {} (a unix {} socket, socket:[{}])", h.pid, h.fd,
                     type_name(e.sock_type), e.ino);
}

class UnixSocketKind final : public FdKind {
 public:
  std::string_view name() const override { return "unix"; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return p.domain == AF_UNIX; }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    auto ino = static_cast<uint64_t>(p.st.st_ino);
    CKPT_TRY_ASSIGN(std::string reply, unix_diag::query_diag(ino));
    CKPT_TRY_ASSIGN(auto diag, unix_diag::parse_diag_reply(reply, ino));
    if (!diag)
      return errorf(
          "pid {}: fd {} is a unix socket (socket:[{}]) that sock_diag does not show (another "
          "network namespace?), which ckpt cannot save",
          p.pid, p.fd, ino);
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    if (std::string why = refusal(*diag, sock); !why.empty())
      return errorf("pid {}: fd {} is socket:[{}], {}, which ckpt cannot save yet", p.pid, p.fd,
                    ino, why);
    CKPT_TRY_ASSIGN(UnixEnd e, describe(p.pid, p.fd, sock, *diag));
    of.payload = schema::encode(e);
    return {};
  }
  Status link(const LinkEnv& env, const std::vector<LinkedFile>& mine) const override {
    std::map<uint64_t, const LinkedFile*> by_ino;
    std::vector<UnixEnd> ends;
    for (auto& f : mine) {
      CKPT_TRY_ASSIGN(UnixEnd e, payload_of<UnixEnd>(*f.file));
      by_ino[e.ino] = &f;
      ends.push_back(std::move(e));
    }
    for (size_t i = 0; i < mine.size(); ++i) {
      if (by_ino.count(ends[i].peer)) continue;
      pid_t holder = env.outside_holder(fmt::format("socket:[{}]", ends[i].peer));
      if (holder != 0)
        return errorf(
            "{} has its peer socket:[{}] in pid {}, outside the dumped processes, which ckpt "
            "cannot save",
            holder_text(mine[i], ends[i]), ends[i].peer, holder);
      return errorf(
          "{} has its peer socket:[{}] held by no process (in flight?), which ckpt cannot save",
          holder_text(mine[i], ends[i]), ends[i].peer);
    }
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    std::map<uint64_t, End> by_ino;
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(UnixEnd e, payload_of<UnixEnd>(*of));
      uint64_t ino = e.ino;
      by_ino.emplace(ino, End{of, std::move(e)});
    }
    for (auto& [ino, end] : by_ino) {
      auto peer = by_ino.find(end.second.peer);
      if (peer == by_ino.end() || peer->second.second.peer != ino ||
          peer->second.second.sock_type != end.second.sock_type)
        return errorf("open file {}: its peer socket:[{}] is not in the image", end.first->id,
                      end.second.peer);
      if (ino < peer->first) CKPT_TRY(make_pair(end, peer->second, out));
    }
    return {};
  }
};

}  // namespace

const FdKind& unix_socket_kind() {
  static const UnixSocketKind kind;
  return kind;
}

}  // namespace ckpt::fds
