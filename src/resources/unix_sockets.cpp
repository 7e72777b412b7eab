#include "resources/unix_sockets.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/hex.hpp"

namespace ckpt::unix_sockets {
namespace {

constexpr int kTcpListen = 10;
constexpr int kRcvShutdown = 1;
constexpr int kSendShutdown = 2;

const char* type_name(int type) {
  switch (type) {
    case SOCK_STREAM:
      return "stream";
    case SOCK_DGRAM:
      return "datagram";
    case SOCK_SEQPACKET:
      return "seqpacket";
    default:
      return "unknown-type";
  }
}

// Abstract names start with a NUL; like ss, show each NUL as '@'.
std::string printable_name(std::string_view raw) {
  std::string s(raw);
  if (!s.empty() && s[0] != '\0') s = s.c_str();  // a path: up to its terminating NUL
  for (char& c : s)
    if (c == '\0') c = '@';
  return s;
}

// Copies the reply into aligned memory: the netlink macros read headers in place.
// A reply is one netlink message of a few hundred bytes; more than a megabyte is not looked at.
std::vector<uint64_t> aligned_copy(std::string_view bytes) {
  size_t n = std::min(bytes.size(), size_t{1} << 20);
  std::vector<uint64_t> buf((n + 7) / 8);
  if (n > 0) std::memcpy(buf.data(), bytes.data(), n);
  return buf;
}

DiagInfo parse_attributes(const unix_diag_msg* msg, size_t payload_len) {
  DiagInfo info;
  info.type = msg->udiag_type;
  info.state = msg->udiag_state;
  info.ino = msg->udiag_ino;
  size_t head = NLMSG_ALIGN(sizeof(unix_diag_msg));
  if (payload_len < head) return info;
  auto* attr = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(msg) + head);
  int left = static_cast<int>(payload_len - head);
  for (; RTA_OK(attr, left); attr = RTA_NEXT(attr, left)) {
    const char* data = static_cast<const char*>(RTA_DATA(attr));
    size_t len = RTA_PAYLOAD(attr);
    switch (attr->rta_type) {
      case UNIX_DIAG_NAME:
        info.name = printable_name(std::string_view(data, len));
        break;
      case UNIX_DIAG_PEER:
        if (len >= sizeof(uint32_t)) {
          uint32_t peer;
          std::memcpy(&peer, data, sizeof(peer));
          info.peer = peer;
        }
        break;
      case UNIX_DIAG_SHUTDOWN:
        if (len >= 1) info.shutdown = static_cast<uint8_t>(data[0]);
        break;
      default:
        break;
    }
  }
  return info;
}

Result<std::string> query_diag(uint64_t ino) {
  ScopedFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return sys_error("socket NETLINK_SOCK_DIAG");
  struct {
    nlmsghdr head;
    unix_diag_req req;
  } msg{};
  msg.head.nlmsg_len = sizeof(msg);
  msg.head.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.head.nlmsg_flags = NLM_F_REQUEST;
  msg.head.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0U;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0U;  // any socket with this inode
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel)) < 0)
    return sys_error(fmt::format("sock_diag request for socket:[{}]", ino));
  std::string reply(16384, '\0');
  ssize_t n = ::recv(nl.get(), reply.data(), reply.size(), 0);
  if (n < 0) return sys_error(fmt::format("sock_diag reply for socket:[{}]", ino));
  reply.resize(static_cast<size_t>(n));
  return reply;
}

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

int int_opt(int fd, int level, int opt) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
}

// A connected socket's peer name: nonempty when it was bound (a server's socket).
std::string peer_name(int sock) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return "";
  size_t path_len =
      len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
  return printable_name(std::string_view(addr.sun_path, path_len));
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

Status fill(pid_t pid, int fd, int sock, const DiagInfo& d, json& j) {
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
  int passcred = int_opt(sock, SOL_SOCKET, SO_PASSCRED);
  if (passcred > 0 && !queue->items.empty())
    return errorf(
        "pid {}: fd {} is {} with SO_PASSCRED and data queued, whose senders' credentials ckpt "
        "cannot save",
        pid, fd, kind);
  json data = json::array();
  for (auto& m : queue->items) data.push_back(to_hex(m));
  j["type"] = "unix";
  j["sock_type"] = d.type;
  j["peer"] = *d.peer;
  j["shutdown"] = d.shutdown;
  j["passcred"] = passcred > 0;
  j["peek_off"] = int_opt(sock, SOL_SOCKET, SO_PEEK_OFF);
  j["sndbuf"] = int_opt(sock, SOL_SOCKET, SO_SNDBUF);
  j["rcvbuf"] = int_opt(sock, SOL_SOCKET, SO_RCVBUF);
  j["queue"] = std::move(data);
  return {};
}

}  // namespace

Result<std::optional<DiagInfo>> parse_diag_reply(std::string_view reply, uint64_t ino) {
  auto buf = aligned_copy(reply);
  const char* base = reinterpret_cast<const char*>(buf.data());
  size_t total = std::min(reply.size(), buf.size() * 8);
  for (size_t at = 0; at < total && total - at >= sizeof(nlmsghdr);
       at += NLMSG_ALIGN(reinterpret_cast<const nlmsghdr*>(base + at)->nlmsg_len)) {
    auto* h = reinterpret_cast<const nlmsghdr*>(base + at);
    if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > total - at) break;
    if (h->nlmsg_type == NLMSG_DONE) break;
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return make_error("short sock_diag error");
      auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (err->error == 0) continue;  // an acknowledgement
      if (err->error == -ENOENT) return std::optional<DiagInfo>();
      return sys_error(-err->error, fmt::format("sock_diag of socket:[{}]", ino));
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg)))
      continue;
    auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
    if (msg->udiag_ino != ino) continue;
    return std::optional<DiagInfo>(parse_attributes(msg, h->nlmsg_len - NLMSG_LENGTH(0)));
  }
  return std::optional<DiagInfo>();
}

Status describe(pid_t pid, int fd, int sock, json& j) {
  uint64_t ino = j["ino"];
  CKPT_TRY_ASSIGN(std::string reply, query_diag(ino));
  CKPT_TRY_ASSIGN(auto diag, parse_diag_reply(reply, ino));
  if (!diag)
    return errorf(
        "pid {}: fd {} is a unix socket (socket:[{}]) that sock_diag does not show (another "
        "network namespace?), which ckpt cannot save",
        pid, fd, ino);
  if (std::string why = refusal(*diag, sock); !why.empty())
    return errorf("pid {}: fd {} is socket:[{}], {}, which ckpt cannot save yet", pid, fd, ino,
                  why);
  return fill(pid, fd, sock, *diag, j);
}

namespace {

json end_of(const json& f) {
  json e;
  for (const char* k :
       {"ino", "flags", "shutdown", "passcred", "peek_off", "sndbuf", "rcvbuf", "queue"})
    e[k] = f[k];
  return e;
}

std::string fd_text(const FdOf& r) {
  return fmt::format("pid {}: fd {} (a unix {} socket, socket:[{}])", r.pid,
                     (*r.entry)["fd"].get<int>(), type_name((*r.entry)["sock_type"].get<int>()),
                     (*r.entry)["ino"].get<uint64_t>());
}

}  // namespace

Status link(const std::vector<FdOf>& fds, json& shared,
            const std::function<pid_t(const std::string&)>& outside_holder) {
  std::map<uint64_t, std::vector<FdOf>> by_ino;
  for (auto& r : fds)
    if ((*r.entry)["type"] == "unix") by_ino[(*r.entry)["ino"].get<uint64_t>()].push_back(r);
  for (auto& [ino, holders] : by_ino) {
    const FdOf& first = holders.front();
    uint64_t peer = (*first.entry)["peer"];
    auto other = by_ino.find(peer);
    if (other == by_ino.end()) {
      pid_t holder = outside_holder(fmt::format("socket:[{}]", peer));
      if (holder != 0)
        return errorf(
            "{} has its peer socket:[{}] in pid {}, outside the dumped processes, which ckpt "
            "cannot save",
            fd_text(first), peer, holder);
      return errorf(
          "{} has its peer socket:[{}] held by no process (in flight?), which ckpt "
          "cannot save",
          fd_text(first), peer);
    }
    uint64_t a = std::min(ino, peer);
    std::string end = ino == a ? "a" : "b";
    for (auto& r : holders) (*r.entry)["shared"] = fmt::format("unix:{}:{}", a, end);
    if (ino != a) continue;
    shared.push_back({{"key", fmt::format("unix:{}", a)},
                      {"type", "unix"},
                      {"sock_type", (*first.entry)["sock_type"]},
                      {"a", end_of(*first.entry)},
                      {"b", end_of(*other->second.front().entry)}});
  }
  return {};
}

namespace {

// Sets a buffer size the way the dumped socket had it (getsockopt shows twice what was asked).
void set_buffer(int sock, int force_opt, int opt, int want) {
  if (want <= 0 || int_opt(sock, SOL_SOCKET, opt) == want) return;
  int half = want / 2;
  if (::setsockopt(sock, SOL_SOCKET, force_opt, &half, sizeof(half)) < 0)
    (void)::setsockopt(sock, SOL_SOCKET, opt, &half, sizeof(half));
}

// Writes what `to` had queued through its peer `from`: the receive queue fills again in order.
Status refill(int from, const json& to, int type) {
  const json& queue = to["queue"];
  for (auto& item : queue) {
    std::string data = from_hex<std::string>(item.get<std::string>());
    size_t done = 0;
    do {
      ssize_t n = ::send(from, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0)
        return sys_error(fmt::format("refill the queue of socket:[{}] ({} bytes)",
                                     to["ino"].get<uint64_t>(), data.size()));
      done += static_cast<size_t>(n);
    } while (done < data.size() && type == SOCK_STREAM);
  }
  return {};
}

Status finish_end(int sock, const json& e) {
  int how = e["shutdown"].get<int>() & (kRcvShutdown | kSendShutdown);
  if (how != 0) {
    int shut = how == (kRcvShutdown | kSendShutdown) ? SHUT_RDWR
               : how == kRcvShutdown                 ? SHUT_RD
                                                     : SHUT_WR;
    if (::shutdown(sock, shut) < 0) return sys_error("shutdown");
  }
  int on = e["passcred"].get<bool>() ? 1 : 0;
  if (on && ::setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0)
    return sys_error("setsockopt SO_PASSCRED");
  int off = e["peek_off"];
  if (off >= 0 && ::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
    return sys_error("setsockopt SO_PEEK_OFF");
  if (::fcntl(sock, F_SETFL, e["flags"].get<int>() & O_NONBLOCK) < 0)
    return sys_error("fcntl F_SETFL");
  return {};
}

}  // namespace

Status open_pair(const json& pair, std::vector<std::pair<std::string, ScopedFd>>& out) {
  int type = pair["sock_type"];
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
    return sys_error(fmt::format("socketpair for {}", pair["key"].get<std::string>()));
  ScopedFd a(sv[0]), b(sv[1]);
  const json& ea = pair["a"];
  const json& eb = pair["b"];
  for (auto [fd, e] : {std::pair{a.get(), &ea}, std::pair{b.get(), &eb}}) {
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, (*e)["sndbuf"]);
    set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, (*e)["rcvbuf"]);
  }
  // Every queue is refilled before any shutdown: a shut-down end takes no more data.
  CKPT_TRY(refill(b.get(), ea, type));
  CKPT_TRY(refill(a.get(), eb, type));
  CKPT_TRY(finish_end(a.get(), ea));
  CKPT_TRY(finish_end(b.get(), eb));
  std::string key = "shared:" + pair["key"].get<std::string>();
  out.emplace_back(key + ":a", std::move(a));
  out.emplace_back(key + ":b", std::move(b));
  return {};
}

}  // namespace ckpt::unix_sockets
