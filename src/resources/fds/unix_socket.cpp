// Unix sockets of every kind (stream, datagram, seqpacket), dump side. Dump asks the kernel
// (sock_diag, UNIX_DIAG) for each socket's state, name, peer, shutdown state, the connections
// waiting in a listener's queue and the file its path name is bound to, and copies what waits in
// its receive queue without taking it (MSG_PEEK stepped by SO_PEEK_OFF, datagrams one by one with
// their senders' names). link() checks that every peer is in the tree or, with --ext-unix-sk,
// accepts one outside. File descriptors in flight (SCM_RIGHTS) come with the peek as copies:
// each is matched to an open file of the tree or saved as one of its own. With SO_PASSCRED each
// queued item keeps its sender's credentials (SCM_CREDENTIALS, as the peek gives them). The
// restore side is unix_restore.cpp. Refused, naming the fd: a peer outside without
// --ext-unix-sk, a waiting connection whose client already sent data, sockets and other kinds not
// saved from a copy in flight, credentials of a sender in another PID namespace, an out-of-band
// byte, a relative path name.
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "proc/proc_file.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/unix_diag.hpp"
#include "resources/fds/unix_socket.hpp"

namespace ckpt::fds {

std::string unix_name_text(const schema::Bytes& name) {
  if (name.empty()) return "unnamed";
  return unix_diag::printable_name(
      std::string_view(reinterpret_cast<const char*>(name.data()), name.size()));
}

namespace {

using unix_diag::DiagInfo;
using unix_diag::type_name;

schema::Bytes to_bytes(std::string_view s) {
  return schema::Bytes(s.begin(), s.end());
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
  ssize_t len = 0;                   // the whole message's length (MSG_TRUNC), or a stream chunk's
  bool truncated = false;            // MSG_CTRUNC: fds or credentials did not fit
  std::vector<ScopedFd> fds;         // copies of the fds in flight with it (SCM_RIGHTS)
  std::string from;                  // the sender's name, for datagrams
  std::optional<SenderCreds> creds;  // with SO_PASSCRED (SCM_CREDENTIALS)
};

// Takes the file descriptors a peek passed to us along with the data.
void take_passed_fds(msghdr& m, std::vector<ScopedFd>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.emplace_back(passed);
    }
  }
}

constexpr size_t kMaxFdsPerMessage = 253;  // SCM_MAX_FD

// Peeks at most `size` bytes at the socket's peek offset.
Result<Peeked> peek_once(int sock, std::string& buf, size_t size) {
  alignas(cmsghdr) char
      control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage) + CMSG_SPACE(sizeof(ucred))];
  sockaddr_un from{};
  iovec iov{buf.data(), std::min(size, buf.size())};
  msghdr m{};
  m.msg_name = &from;
  m.msg_namelen = sizeof(from);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  ssize_t n = ::recvmsg(sock, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
  if (n < 0) return sys_error("recvmsg MSG_PEEK");
  Peeked p;
  p.len = n;
  p.truncated = (m.msg_flags & MSG_CTRUNC) != 0;
  take_passed_fds(m, p.fds);
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS) continue;
    ucred u;
    std::memcpy(&u, CMSG_DATA(c), sizeof u);
    p.creds = SenderCreds{u.pid, u.uid, u.gid};
  }
  size_t head = offsetof(sockaddr_un, sun_path);
  if (m.msg_namelen > head)
    p.from.assign(from.sun_path, std::min<size_t>(m.msg_namelen - head, sizeof(from.sun_path)));
  return p;
}

// Everything in the socket's receive queue, left in place: stream data as one string, datagrams
// and seqpacket records one string each with their senders' names. SO_PEEK_OFF makes each
// MSG_PEEK continue where the last one stopped; for datagrams it skips whole messages, and an
// empty datagram once peeked is skipped by the next peek at the same offset. That mark stays: an
// empty datagram that was peeked before (by the program, or by an earlier --leave-running dump)
// is skipped by every later peek at an offset, and is not saved (a known gap; the kernel offers
// no other way to read the queue without taking it).
//
// File descriptors in flight come as copies with the peek of their message. A stream peek goes
// on through messages without fds and stops at the end of the first one with fds, as a reading
// recv() does: the stream is cut where that message begins, found by peeking ever fewer bytes,
// so that each piece with fds can be sent again on its own.
struct Queue {
  std::vector<std::string> items, from;
  std::vector<std::optional<SenderCreds>> creds;  // as `items`
  std::vector<std::vector<ScopedFd>> fds;         // each item's fds in flight (copies), as `items`
  bool truncated = false;                         // more fds than a peek can take
};

class QueuePeeker {
 public:
  QueuePeeker(int sock, int type, int shutdown)
      : sock_(sock), type_(type), shutdown_(shutdown), offset_(sock) {}

  Result<Queue> run() {
    int queued = 0;
    if (type_ == SOCK_STREAM && ::ioctl(sock_, SIOCINQ, &queued) < 0) queued = 0;
    // A stream peek stops at the end of a message with fds, never at the end of the buffer.
    buf_.assign(std::max<size_t>(65536, static_cast<size_t>(queued) + 1), '\0');
    if (!offset_.set(0)) return sys_error("setsockopt SO_PEEK_OFF");
    for (;;) {
      auto got = peek_once(sock_, buf_, buf_.size());
      if (!got.ok()) {
        if (got.error().errnum == EAGAIN) break;
        return got.error();
      }
      if (got->truncated) {
        q_.truncated = true;
        return std::move(q_);
      }
      CKPT_TRY_ASSIGN(bool more, type_ == SOCK_STREAM ? add_stream(*got) : add_message(*got));
      if (!more) break;
    }
    return std::move(q_);
  }

 private:
  void add_item(std::string data, std::vector<ScopedFd> fds, std::string from,
                std::optional<SenderCreds> creds) {
    q_.creds.push_back(creds);
    q_.items.push_back(std::move(data));
    q_.fds.push_back(std::move(fds));
    q_.from.push_back(std::move(from));
  }

  Result<bool> add_stream(Peeked& got) {
    size_t len = static_cast<size_t>(got.len);
    if (len == 0) return false;  // shut down for reading and nothing left
    size_t cut = len;  // the bytes before the message with fds: all of them when none came
    if (!got.fds.empty()) {
      CKPT_TRY_ASSIGN(cut, first_byte_with_fds(len));
      if (!offset_.set(at_ + static_cast<int>(len))) return sys_error("setsockopt SO_PEEK_OFF");
    }
    // A reading recv() also stops where the senders' credentials change (with SO_PASSCRED): the
    // peek did, so each piece keeps its own.
    if (cut > 0 && !q_.items.empty() && q_.fds.back().empty() && q_.creds.back() == got.creds)
      q_.items.back().append(buf_.data(), cut);
    else if (cut > 0)
      add_item(std::string(buf_.data(), cut), {}, "", got.creds);
    if (!got.fds.empty())
      add_item(std::string(buf_.data() + cut, len - cut), std::move(got.fds), "", got.creds);
    at_ += static_cast<int>(len);
    return true;
  }

  // Where, in the `len` bytes peeked at at_, the message with fds begins: the fewest bytes whose
  // peek still brings fds, less one.
  Result<size_t> first_byte_with_fds(size_t len) {
    std::string probe(len, '\0');
    size_t lo = 1, hi = len;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (!offset_.set(at_)) return sys_error("setsockopt SO_PEEK_OFF");
      CKPT_TRY_ASSIGN(Peeked p, peek_once(sock_, probe, mid));
      if (!p.fds.empty())
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo - 1;
  }

  Result<bool> add_message(Peeked& got) {
    size_t len = static_cast<size_t>(got.len);
    // A datagram socket shut down for reading answers 0 once its queue is empty.
    if (len == 0 && (shutdown_ & kRcvShutdown)) return false;
    if (len > buf_.size()) {  // truncated: peek the same message again with room for all of it
      buf_.resize(len);
      if (!offset_.set(at_)) return sys_error("setsockopt SO_PEEK_OFF");
      return true;
    }
    add_item(std::string(buf_.data(), len), std::move(got.fds), std::move(got.from), got.creds);
    at_ += static_cast<int>(len);
    return true;
  }

  int sock_, type_, shutdown_;
  PeekOffset offset_;
  std::string buf_;
  int at_ = 0;
  Queue q_;
};

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

// A connected socket's peer name as bound (sun_path bytes), empty when the peer is unnamed.
std::string peer_name(int sock) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return "";
  size_t head = offsetof(sockaddr_un, sun_path);
  return len > head
             ? std::string(addr.sun_path, std::min<size_t>(len - head, sizeof(addr.sun_path)))
             : "";
}

// A path name without its terminating NUL.
std::string path_of(const std::string& raw) {
  return std::string(raw.c_str());
}

std::string kind_text(const DiagInfo& d) {
  return fmt::format("a unix {} socket", type_name(d.type));
}

// Why a socket cannot be saved, or "" when ckpt can recreate it.
std::string refusal(const DiagInfo& d) {
  if (d.type != SOCK_STREAM && d.type != SOCK_DGRAM && d.type != SOCK_SEQPACKET)
    return kind_text(d);
  if (!d.raw_name.empty() && d.raw_name[0] != '\0' && d.raw_name[0] != '/')
    return fmt::format("{} bound to the relative path {} (relative to a directory unknown now)",
                       kind_text(d), d.name);
  if (d.type == SOCK_DGRAM && d.peer && *d.peer == 0)
    return fmt::format("{} whose peer has been closed", kind_text(d));
  return "";
}

// Whether the path still leads to the socket's own file (UNIX_DIAG_VFS), and its owner and mode.
void describe_file(const DiagInfo& d, UnixEnd& e) {
  if (d.raw_name.empty() || d.raw_name[0] == '\0') return;
  struct stat st {};
  bool same = d.vfs_ino && ::stat(path_of(d.raw_name).c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
              static_cast<uint64_t>(st.st_ino) == *d.vfs_ino;
  e.name_file = static_cast<int32_t>(same ? NameFile::present : NameFile::gone);
  if (!same) return;
  e.file_mode = st.st_mode & 07777;
  e.file_uid = st.st_uid, e.file_gid = st.st_gid;
}

// A listener's waiting connections (UNIX_DIAG_ICONS lists their clients). The sockets accept()
// will return have no inode and are in no fd table: sock_diag does not show them, and ckpt cannot
// read what a client sent into one without accepting it (which would take it from the program).
// What a living client sent and is not yet read counts in its UNIX_DIAG_RQLEN write queue (as
// buffer memory, not bytes); a closed client's cannot be known: such connections are refused
// rather than saved empty.
Status describe_waiting(pid_t pid, int fd, const DiagInfo& d, UnixEnd& e) {
  e.backlog = static_cast<int32_t>(d.wqueue);
  std::string listener = fmt::format(
      "pid {}: fd {} is a listening unix {} socket on {} with a "
      "connection waiting to be accepted",
      pid, fd, type_name(d.type), d.name);
  for (uint64_t client : d.icons) {
    if (client == 0)
      return errorf(
          "{} whose client has closed: what it sent cannot be read without accepting it, which "
          "ckpt does not do",
          listener);
    CKPT_TRY_ASSIGN(std::string reply, unix_diag::query_diag(client));
    CKPT_TRY_ASSIGN(auto c, unix_diag::parse_diag_reply(reply, client));
    if (c && c->wqueue > 0)
      return errorf(
          "{} whose client (socket:[{}]) already sent data into it ({} bytes of buffers), which "
          "ckpt cannot read without accepting it",
          listener, client, c->wqueue);
    e.waiting.push_back({client});
  }
  return {};
}

// Kinds whose open file ckpt can save from its own copy of a descriptor in flight: what they
// save is read from the open file, never from the process that would hold it.
bool savable_in_flight(std::string_view kind) {
  static const std::set<std::string_view> kinds{"pipe",     "fifo",    "file", "eventfd",
                                                "signalfd", "chardev", "memfd"};
  return kinds.count(kind) > 0;
}

const FdKind* claimer(FdProbe& p, const DumpFlags& flags) {
  for (const FdKind* k : all_kinds())
    if (k->claims(p, flags)) return k;
  return nullptr;
}

// The open files of one message's fds in flight (the copies a peek gave ckpt), refused unless
// each is of a kind ckpt can save from a copy.
Result<std::vector<uint32_t>> save_in_flight(DumpEnv& env, pid_t pid, int fd,
                                             const std::string& kind,
                                             std::vector<ScopedFd>& copies) {
  std::vector<uint32_t> ids;
  for (auto& copy : copies) {
    CKPT_TRY_ASSIGN(FdProbe p, FdProbe::read(::getpid(), copy.get()));
    const FdKind* k = claimer(p, env.flags);
    if (S_ISSOCK(p.st.st_mode) || !k || !savable_in_flight(k->name()))
      return errorf(
          "pid {}: fd {} is {} with {} ({}) in flight (SCM_RIGHTS) in its queue, which ckpt "
          "cannot save (it saves pipes, FIFOs, files, memfds, eventfds, signalfds and devices in "
          "flight; not sockets, whose own queues may hold more)",
          pid, fd, kind, p.link, k ? k->name() : "of no kind ckpt knows");
    CKPT_TRY_ASSIGN(uint32_t id, env.in_flight(p, std::move(copy)));
    ids.push_back(id);
  }
  return ids;
}

// The queue's items into `e`, with the open files of their fds in flight.
Status keep_queue(DumpEnv& env, pid_t pid, int fd, const std::string& kind, Queue& q, UnixEnd& e) {
  bool any_fds = false;
  for (auto& fds : q.fds) any_fds = any_fds || !fds.empty();
  for (size_t i = 0; i < q.items.size(); ++i) {
    e.queue.emplace_back(q.items[i].begin(), q.items[i].end());
    if (!any_fds) continue;
    CKPT_TRY_ASSIGN(auto ids, save_in_flight(env, pid, fd, kind, q.fds[i]));
    e.rights.push_back(std::move(ids));
  }
  if (e.sock_type != SOCK_STREAM)
    for (auto& from : q.from) e.from.push_back(to_bytes(from));
  if (e.passcred) {
    for (size_t i = 0; i < q.creds.size(); ++i) {
      // The restore sends each item with its sender's credentials again, which needs a PID
      // this namespace can name.
      if (!q.creds[i] || q.creds[i]->pid <= 0)
        return errorf(
            "pid {}: fd {} is {} with SO_PASSCRED and data queued from a sender whose process "
            "this PID namespace cannot name, which ckpt cannot save",
            pid, fd, kind);
      e.creds.push_back(*q.creds[i]);
    }
  }
  return {};
}

Result<UnixEnd> describe(DumpEnv& env, pid_t pid, int fd, int sock, const DiagInfo& d) {
  UnixEnd e;
  e.ino = d.ino, e.peer = d.peer.value_or(0), e.has_peer = d.peer.has_value();
  e.sock_type = d.type, e.shutdown = d.shutdown, e.state = d.state;
  e.name = to_bytes(d.raw_name);
  e.peer_name = to_bytes(peer_name(sock));
  describe_file(d, e);
  e.passcred = int_sockopt(sock, SOL_SOCKET, SO_PASSCRED) > 0;
  e.peek_off = int_sockopt(sock, SOL_SOCKET, SO_PEEK_OFF);
  e.sndbuf = int_sockopt(sock, SOL_SOCKET, SO_SNDBUF);
  e.rcvbuf = int_sockopt(sock, SOL_SOCKET, SO_RCVBUF);
  if (d.state == kUnixListen) {
    CKPT_TRY(describe_waiting(pid, fd, d, e));
    return e;
  }
  if (d.type != SOCK_DGRAM && !d.peer) return e;  // never connected: no queue (recv says EINVAL)
  std::string kind = kind_text(d);
  auto queue = QueuePeeker(sock, d.type, d.shutdown).run();
  if (!queue.ok())
    return queue.error().wrap(fmt::format("pid {}: fd {}: read the queue of {}", pid, fd, kind));
  if (queue->truncated)
    return errorf(
        "pid {}: fd {} is {} with more file descriptors in flight (SCM_RIGHTS) in one message "
        "than a peek can take, which ckpt cannot save",
        pid, fd, kind);
  CKPT_TRY(check_all_read(pid, fd, sock, d.type, *queue, kind));
  CKPT_TRY(keep_queue(env, pid, fd, kind, *queue, e));
  return e;
}

std::string holder_text(const LinkedFile& f, const UnixEnd& e) {
  const Holder& h = f.holders.front();
  return fmt::format("pid {}: fd {} (a unix {} socket, socket:[{}])", h.pid, h.fd,
                     type_name(e.sock_type), e.ino);
}

std::string comm_of(pid_t pid) {
  auto comm = proc::read_proc_file(pid, "comm");
  if (!comm.ok()) return "?";
  std::string c = *comm;
  while (!c.empty() && c.back() == '\n') c.pop_back();
  return c;
}

// Names the process outside the tree holding socket `ino` ("pid 42 (redis-server)").
std::string outside_text(const LinkEnv& env, uint64_t ino) {
  pid_t holder = env.outside_holder(fmt::format("socket:[{}]", ino));
  if (holder == 0) return "no process (a connection not yet accepted, or in flight)";
  return fmt::format("pid {} ({})", holder, comm_of(holder));
}

// A peer outside the dumped processes: refused without --ext-unix-sk (recorded in the payload as
// peer_outside at dump, settled here); with it, a datagram socket is connected again by name at
// restore and a stream needs `restore --inherit-fd`.
Status check_outside_peer(const LinkEnv& env, const LinkedFile& f, const UnixEnd& e) {
  std::string where = e.peer_name.empty() ? "" : " on " + unix_name_text(e.peer_name);
  if (!e.peer_outside && e.peer == 0)
    return errorf(
        "{} waits to be accepted by a listener{} outside the dumped processes, which ckpt saves "
        "only with --ext-unix-sk",
        holder_text(f, e), where);
  if (!e.peer_outside)
    return errorf(
        "{} is connected to socket:[{}]{} held by {}, outside the dumped processes, which ckpt "
        "saves only with --ext-unix-sk",
        holder_text(f, e), e.peer, where, outside_text(env, e.peer));
  if (e.sock_type == SOCK_DGRAM && e.peer_name.empty())
    return errorf(
        "{} is connected to the unnamed socket:[{}] held by {}, outside the dumped processes, "
        "which cannot be connected to again",
        holder_text(f, e), e.peer, outside_text(env, e.peer));
  return {};
}

class UnixSocketKind final : public FdKind {
 public:
  std::string_view name() const override { return "unix"; }
  // Last: queues may carry files of any other kind (SCM_RIGHTS), sent again from those made.
  int recreate_rank() const override { return 1; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return p.domain == AF_UNIX; }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    auto ino = static_cast<uint64_t>(p.st.st_ino);
    CKPT_TRY_ASSIGN(std::string reply, unix_diag::query_diag(ino));
    CKPT_TRY_ASSIGN(auto diag, unix_diag::parse_diag_reply(reply, ino));
    if (!diag)
      return errorf(
          "pid {}: fd {} is a unix socket (socket:[{}]) that sock_diag does not show (another "
          "network namespace?), which ckpt cannot save",
          p.pid, p.fd, ino);
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    if (std::string why = refusal(*diag); !why.empty())
      return errorf("pid {}: fd {} is socket:[{}], {}, which ckpt cannot save yet", p.pid, p.fd,
                    ino, why);
    CKPT_TRY_ASSIGN(UnixEnd e, describe(env, p.pid, p.fd, sock, *diag));
    e.peer_outside = env.flags.ext_unix_sk;  // settled by link()
    of.payload = schema::encode(e);
    return {};
  }
  Status link(const LinkEnv& env, const std::vector<LinkedFile>& mine) const override {
    std::vector<UnixEnd> ends;
    std::set<uint64_t> inos, waiting_clients;
    for (auto& f : mine) {
      CKPT_TRY_ASSIGN(UnixEnd e, payload_of<UnixEnd>(*f.file));
      inos.insert(e.ino);
      for (auto& w : e.waiting) waiting_clients.insert(w.peer);
      ends.push_back(std::move(e));
    }
    for (size_t i = 0; i < mine.size(); ++i) {
      UnixEnd& e = ends[i];
      bool outside = e.has_peer && (e.peer != 0 ? !inos.count(e.peer)
                                                : waits_outside(e, waiting_clients.count(e.ino)));
      if (outside) CKPT_TRY(check_outside_peer(env, mine[i], e));
      e.peer_outside = outside;
      for (auto& w : e.waiting)
        if (w.peer != 0 && !inos.count(w.peer))
          return errorf(
              "{} listening on {} has a connection waiting from socket:[{}] held by {}, outside "
              "the dumped processes, which ckpt cannot save",
              holder_text(mine[i], e), unix_name_text(e.name), w.peer, outside_text(env, w.peer));
      mine[i].file->payload = schema::encode(e);
    }
    return {};
  }

 private:
  // A stream whose peer has no inode: either the peer was closed (which shut this end down both
  // ways) or this end waits in the queue of a listener, outside the tree when none of the tree
  // lists it.
  static bool waits_outside(const UnixEnd& e, bool waits_inside) {
    bool closed = (e.shutdown & (kRcvShutdown | kSendShutdown)) == (kRcvShutdown | kSendShutdown);
    return e.sock_type != SOCK_DGRAM && !closed && !waits_inside;
  }

 public:
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    return recreate_unix_sockets(env, mine, out);
  }
};

}  // namespace

const FdKind& unix_socket_kind() {
  static const UnixSocketKind kind;
  return kind;
}

}  // namespace ckpt::fds
