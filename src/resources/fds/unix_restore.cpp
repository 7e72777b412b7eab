// Unix sockets, restore side: every unix socket of the image made again in the restorer, in an
// order that lets each be connected the way the program made it:
//   1. listeners bound to their names and listening;
//   2. other sockets that are not one end of a connection made here: created and bound;
//   3. connections: an unnamed pair is a socketpair; a pair where a name is involved is a
//      connect() to the listener (the image's, or a temporary one bound to the same name) and an
//      accept(), so that getsockname/getpeername answer as before on both ends; a stream whose
//      peer was closed gets a peer that is closed once the queue is written through it;
//   4. the connections waiting in each listener's queue: connect() again, in order, without
//      accept, so that the program's accept() returns them;
//   5. datagrams written back, each from a socket bound to its sender's name;
//   (queues are written back with their fds in flight, SCM_RIGHTS, taken from the open files of
//   other kinds, all recreated before this one);
//   6. datagram sockets connected to their peers by name;
//   7. shutdowns, options, status flags; last, socket files of names whose file was deleted or
//      replaced at dump are unlinked (and a replacement put back), so that connects above could
//      still find them.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <signal.h>

#include <cstring>
#include <map>
#include <utility>

#include "common/child_process.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/unix_diag.hpp"
#include "resources/fds/unix_socket.hpp"
#include "restore/spawn.hpp"

namespace ckpt::fds {
namespace {

struct Sock {
  const schema::OpenFile* of = nullptr;
  UnixEnd e;
  ScopedFd fd;
};

using Socks = std::map<uint64_t, Sock>;  // by the dumped inode

bool is_path(const schema::Bytes& name) {
  return !name.empty() && name[0] != 0;
}

std::string path_of(const schema::Bytes& name) {
  std::string s(name.begin(), name.end());
  return std::string(s.c_str());
}

Result<sockaddr_un> address_of(const schema::Bytes& name, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (name.size() > sizeof(a.sun_path))
    return errorf("unix socket name {} is too long", unix_name_text(name));
  std::memcpy(a.sun_path, name.data(), name.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  return a;
}

// Socket files to take away once every connect is made, and files put aside to bring back; done
// on every path out of the restore (a failed restore leaves the paths as it found them).
class PathCleanup {
 public:
  PathCleanup() = default;
  PathCleanup(const PathCleanup&) = delete;
  PathCleanup& operator=(const PathCleanup&) = delete;
  ~PathCleanup() {
    for (auto& p : unlink_) ::unlink(p.c_str());
    for (auto it = aside_.rbegin(); it != aside_.rend(); ++it)
      (void)::rename(it->second.c_str(), it->first.c_str());
  }
  void unlink_later(const std::string& path) { unlink_.push_back(path); }
  // Moves what is at `path` out of the way until the end.
  Status put_aside(const std::string& path) {
    std::string to = fmt::format("{}.ckpt-aside-{}-{}", path, ::getpid(), aside_.size());
    if (::rename(path.c_str(), to.c_str()) < 0)
      return sys_error(fmt::format("move {} aside to bind a socket there", path));
    aside_.emplace_back(path, to);
    return {};
  }

 private:
  std::vector<std::string> unlink_;
  std::vector<std::pair<std::string, std::string>> aside_;
};

// Binds `sock` to `name`. A path whose file was the socket's own at dump gets a new socket file
// (a stale one left by the dead original is unlinked first) with the old mode and owner; any
// other path name is bound for the time of the restore only: whatever is there is put aside and
// comes back at the end, the new file is unlinked.
Status bind_name(int sock, const schema::Bytes& name, NameFile file, const UnixEnd* owner,
                 PathCleanup& paths) {
  if (name.empty()) return {};
  socklen_t len = 0;
  CKPT_TRY_ASSIGN(sockaddr_un addr, address_of(name, len));
  std::string path = is_path(name) ? path_of(name) : "";
  struct stat st {};
  bool taken = !path.empty() && ::lstat(path.c_str(), &st) == 0;
  if (taken && file == NameFile::present) {
    if (!S_ISSOCK(st.st_mode))
      return errorf("bind a unix socket to {}: the path is now a file that is not a socket", path);
    if (::unlink(path.c_str()) < 0) return sys_error(fmt::format("unlink the old {}", path));
  } else if (taken) {
    CKPT_TRY(paths.put_aside(path));
  }
  if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), len) < 0)
    return sys_error(fmt::format("bind a unix socket to {}", unix_name_text(name)));
  if (path.empty()) return {};
  if (file != NameFile::present) {
    paths.unlink_later(path);
    return {};
  }
  if (owner && owner->file_mode != 0) {
    if (::chmod(path.c_str(), owner->file_mode) < 0)
      return sys_error(fmt::format("chmod {}", path));
    if (::lchown(path.c_str(), owner->file_uid, owner->file_gid) < 0)
      return sys_error(fmt::format("chown {}", path));
  }
  return {};
}

Result<ScopedFd> new_socket(int type, std::string_view what) {
  ScopedFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error(fmt::format("socket for {}", what));
  return fd;
}

Status connect_to(int sock, const schema::Bytes& name, std::string_view what) {
  socklen_t len = 0;
  CKPT_TRY_ASSIGN(sockaddr_un addr, address_of(name, len));
  if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), len) < 0)
    return sys_error(fmt::format("{}: connect to {}", what, unix_name_text(name)));
  return {};
}

// Sets a buffer size the way the dumped socket had it (getsockopt shows twice what was asked).
void set_buffer(int sock, int force_opt, int opt, int want) {
  if (want <= 0 || int_sockopt(sock, SOL_SOCKET, opt) == want) return;
  int half = want / 2;
  if (::setsockopt(sock, SOL_SOCKET, force_opt, &half, sizeof(half)) < 0)
    (void)::setsockopt(sock, SOL_SOCKET, opt, &half, sizeof(half));
}

void set_buffers(int sock, const UnixEnd& e) {
  set_buffer(sock, SO_SNDBUFFORCE, SO_SNDBUF, e.sndbuf);
  set_buffer(sock, SO_RCVBUFFORCE, SO_RCVBUF, e.rcvbuf);
}

// The fds in flight with queue item `i` of `to`: open files recreated before the sockets (every
// kind a copy in flight can be is recreated before "unix").
Result<std::vector<int>> rights_of(const UnixEnd& to, size_t i, const OpenedFiles& files) {
  std::vector<int> fds;
  if (i >= to.rights.size()) return fds;
  for (uint32_t id : to.rights[i]) {
    auto it = files.find(id);
    if (it == files.end() || !it->second)
      return errorf("socket:[{}]: open file {} in flight in its queue was not recreated", to.ino,
                    id);
    fds.push_back(it->second.get());
  }
  return fds;
}

// A process with PID `pid` while a message is sent with credentials naming it: the kernel takes
// SCM_CREDENTIALS only for a PID that exists. The message keeps the kernel's record of that PID,
// which still reads as the same number once the stand-in is gone and the restored sender (a
// puppet made later) has it again. None is made when a process has it already.
class PidStandIn {
 public:
  static Result<PidStandIn> make(pid_t pid) {
    PidStandIn s;
    if (::kill(pid, 0) == 0 || errno == EPERM) return s;
    CKPT_TRY_ASSIGN(pid_t got, clone_with_pid(pid));
    if (got == 0)
      for (;;) ::pause();  // killed by the destructor
    s.pid_ = got;
    return s;
  }
  PidStandIn() = default;
  PidStandIn(PidStandIn&& o) noexcept : pid_(std::exchange(o.pid_, 0)) {}
  PidStandIn& operator=(PidStandIn&&) = delete;
  ~PidStandIn() {
    if (pid_ != 0) kill_and_wait(pid_);
  }

 private:
  pid_t pid_ = 0;
};

// send(), or sendto() `addr`, with `fds` attached (SCM_RIGHTS) when there are any, and the
// sender's credentials (SCM_CREDENTIALS) when given.
ssize_t send_with(int sock, const uint8_t* data, size_t len, const std::vector<int>& fds,
                  const sockaddr_un* addr, socklen_t addr_len, const SenderCreds* creds) {
  iovec iov{const_cast<uint8_t*>(data), len};
  msghdr m{};
  m.msg_name = const_cast<sockaddr_un*>(addr);
  m.msg_namelen = addr ? addr_len : 0;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  size_t rights = fds.empty() ? 0 : CMSG_SPACE(sizeof(int) * fds.size());
  std::vector<char> control(rights + (creds ? CMSG_SPACE(sizeof(ucred)) : 0));
  if (control.empty()) return ::sendmsg(sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
  m.msg_control = control.data();
  m.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (!fds.empty()) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    c = CMSG_NXTHDR(&m, c);
  }
  if (creds) {
    ucred u{creds->pid, creds->uid, creds->gid};
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof u);
    std::memcpy(CMSG_DATA(c), &u, sizeof u);
  }
  return ::sendmsg(sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

// Stand-ins for the senders a queue's credentials name: one per PID, kept until the whole queue
// is written (a busy sender has many items, and a stand-in is a clone).
class StandIns {
 public:
  Status cover(const SenderCreds* creds) {
    if (!creds || made_.count(creds->pid)) return {};
    CKPT_TRY_ASSIGN(PidStandIn made, PidStandIn::make(creds->pid));
    made_.emplace(creds->pid, std::move(made));
    return {};
  }

 private:
  std::map<pid_t, PidStandIn> made_;
};

// The credentials item `i` of `to`'s queue is sent with, if it had any.
const SenderCreds* creds_of(const UnixEnd& to, size_t i) {
  return i < to.creds.size() ? &to.creds[i] : nullptr;
}

// Writes what `to` had queued through `from`: its peer, or (datagrams) a socket sending to it.
// The fds in flight go with the first bytes of their item, which the dump made start where their
// message started.
Status write_queue(int from, const UnixEnd& to, const OpenedFiles& files) {
  StandIns senders;
  for (size_t i = 0; i < to.queue.size(); ++i) {
    const auto& item = to.queue[i];
    CKPT_TRY_ASSIGN(std::vector<int> fds, rights_of(to, i, files));
    const SenderCreds* creds = creds_of(to, i);
    CKPT_TRY(senders.cover(creds));
    size_t done = 0;
    do {
      ssize_t n = send_with(from, item.data() + done, item.size() - done,
                            done == 0 ? fds : std::vector<int>{}, nullptr, 0, creds);
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
  bool peer_closed = e.has_peer && e.peer == 0;  // the closed peer shut it down already
  if (how != 0 && !peer_closed && e.state != kUnixListen && ::shutdown(sock, shutdown_how(how)) < 0)
    return sys_error(fmt::format("shutdown socket:[{}]", e.ino));
  int on = e.passcred ? 1 : 0;
  if (on && ::setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0)
    return sys_error("setsockopt SO_PASSCRED");
  int off = e.peek_off;
  if (off >= 0 && ::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
    return sys_error("setsockopt SO_PEEK_OFF");
  return set_status_flags(sock, flags, "unix socket");
}

// The whole restore of the unix sockets of one image.
class Rebuild {
 public:
  Rebuild(const RecreateEnv& env, Socks& socks, const OpenedFiles& out)
      : env_(env), socks_(socks), out_(out) {}

  Status run() {
    for (auto& [ino, s] : socks_)
      if (s.e.state == kUnixListen) CKPT_TRY(make_listener(s));
    for (auto& [ino, s] : socks_)
      if (!s.fd && s.e.state != kUnixListen && stands_alone(s)) CKPT_TRY(make_alone(s));
    for (auto& [ino, s] : socks_)
      if (!s.fd && !stands_alone(s) && !waiting_client(s)) CKPT_TRY(make_connection(s));
    for (auto& [ino, s] : socks_)
      if (s.e.state == kUnixListen) CKPT_TRY(make_waiting(s));
    for (auto& [ino, s] : socks_)
      if (s.e.sock_type == SOCK_DGRAM && stands_alone(s)) CKPT_TRY(write_datagrams(s));
    for (auto& [ino, s] : socks_)
      if (s.e.sock_type == SOCK_DGRAM && s.e.has_peer && stands_alone(s))
        CKPT_TRY(connect_to(s.fd.get(), s.e.peer_name, what(s)));
    for (auto& [ino, s] : socks_) {
      if (!s.fd) return errorf("{}: socket:[{}] was not made again", env_.holder(s.of->id), ino);
      CKPT_TRY(finish_end(s.fd.get(), s.e, s.of->flags));
    }
    return {};
  }

 private:
  std::string what(const Sock& s) const {
    return fmt::format("{} (socket:[{}] {})", env_.holder(s.of->id), s.e.ino,
                       unix_name_text(s.e.name));
  }

  Sock* find(uint64_t ino) {
    auto it = socks_.find(ino);
    return it == socks_.end() ? nullptr : &it->second;
  }
  Sock* listener_named(const schema::Bytes& name) {
    for (auto& [ino, s] : socks_)
      if (s.e.state == kUnixListen && s.e.name == name) return &s;
    return nullptr;
  }
  Sock* mutual_peer(Sock& s) {
    Sock* p = s.e.has_peer && s.e.peer != 0 ? find(s.e.peer) : nullptr;
    return p && p->e.has_peer && p->e.peer == s.e.ino && p->e.sock_type == s.e.sock_type ? p
                                                                                         : nullptr;
  }
  bool unnamed_pair(Sock& s) {
    Sock* p = mutual_peer(s);
    return p && s.e.name.empty() && p->e.name.empty();
  }
  // Sockets made on their own, then bound: not listening, and not one end of a connection made
  // by socketpair or connect/accept (datagram sockets are connected later, by name).
  bool stands_alone(Sock& s) {
    if (s.e.state == kUnixListen) return false;
    if (!s.e.has_peer) return true;
    if (s.e.sock_type == SOCK_DGRAM) return !unnamed_pair(s);
    return false;
  }
  bool waiting_client(Sock& s) {
    for (auto& [ino, l] : socks_)
      for (auto& w : l.e.waiting)
        if (w.peer == s.e.ino) return true;
    return false;
  }

  Status make_listener(Sock& s) {
    CKPT_TRY_ASSIGN(s.fd, new_socket(s.e.sock_type, what(s)));
    set_buffers(s.fd.get(), s.e);
    CKPT_TRY(bind_name(s.fd.get(), s.e.name, NameFile(s.e.name_file), &s.e, paths_));
    if (::listen(s.fd.get(), s.e.backlog) < 0) return sys_error(fmt::format("{}: listen", what(s)));
    return {};
  }

  Status make_alone(Sock& s) {
    if (s.e.peer_outside && s.e.sock_type != SOCK_DGRAM)
      return errorf(
          "{} was connected to socket:[{}] outside the dumped processes: hand in a socket for it "
          "with --inherit-fd fd[N]:socket:[{}]",
          env_.holder(s.of->id), s.e.peer, s.e.ino);
    CKPT_TRY_ASSIGN(s.fd, new_socket(s.e.sock_type, what(s)));
    set_buffers(s.fd.get(), s.e);
    return bind_name(s.fd.get(), s.e.name, NameFile(s.e.name_file), &s.e, paths_);
  }

  // A connected pair: socketpair() when neither end has a name, else connect() and accept().
  Status make_connection(Sock& s) {
    if (s.e.peer_outside) return make_alone(s);  // refused there, naming --inherit-fd
    Sock* p = mutual_peer(s);
    if (s.e.has_peer && s.e.peer != 0 && !p)
      return errorf("{}: its peer socket:[{}] is not in the image", what(s), s.e.peer);
    if (p ? unnamed_pair(s) : s.e.name.empty() && s.e.peer_name.empty())
      return make_socketpair(s, p);
    // The accepted end is bound to the name its peer sees: a listener's.
    bool s_accepted = listener_named(s.e.name) != nullptr ||
                      (!(p && listener_named(p->e.name)) && !s.e.name.empty() &&
                       (!p || p->e.peer_name == s.e.name));
    Sock* server = s_accepted ? &s : p;
    Sock* client = s_accepted ? p : &s;
    const schema::Bytes& listen_name = s_accepted ? s.e.name : s.e.peer_name;
    schema::Bytes client_name = client ? client->e.name : s.e.peer_name;
    NameFile client_file = client ? NameFile(client->e.name_file) : NameFile::gone;
    CKPT_TRY_ASSIGN(auto fds,
                    connect_accept(s.e.sock_type, listen_name, client_name, client_file, what(s)));
    if (server) server->fd = std::move(fds.second);
    if (client) client->fd = std::move(fds.first);
    set_buffers(s.fd.get(), s.e);
    if (!p) return write_queue(fds.first ? fds.first.get() : fds.second.get(), s.e, out_);
    set_buffers(p->fd.get(), p->e);
    CKPT_TRY(write_queue(p->fd.get(), s.e, out_));
    return write_queue(s.fd.get(), p->e, out_);
  }

  // A pair without names; with `b` null, the peer was closed: a stand-in that writes the queue
  // and closes.
  Status make_socketpair(Sock& a, Sock* b) {
    int sv[2];
    if (::socketpair(AF_UNIX, a.e.sock_type | SOCK_CLOEXEC, 0, sv) < 0)
      return sys_error(fmt::format("socketpair for {}", what(a)));
    a.fd.reset(sv[0]);
    ScopedFd other(sv[1]);
    set_buffers(a.fd.get(), a.e);
    if (!b) return write_queue(other.get(), a.e, out_);
    b->fd = std::move(other);
    set_buffers(b->fd.get(), b->e);
    // Every queue is refilled before any shutdown: a shut-down end takes no more data.
    CKPT_TRY(write_queue(b->fd.get(), a.e, out_));
    return write_queue(a.fd.get(), b->e, out_);
  }
  // A client bound to `client_name` connected to a listener on `listen_name` (the image's, else a
  // temporary one), and the accepted end: {client, server}.
  Result<std::pair<ScopedFd, ScopedFd>> connect_accept(int type, const schema::Bytes& listen_name,
                                                       const schema::Bytes& client_name,
                                                       NameFile client_file,
                                                       const std::string& what) {
    ScopedFd temp;
    int listener = -1;
    if (Sock* l = listener_named(listen_name); l && l->fd) {
      listener = l->fd.get();
    } else if (listen_name.empty()) {
      return errorf("{}: a connection with no name on either end that is not a pair", what);
    } else {
      CKPT_TRY_ASSIGN(temp, new_socket(type, what));
      CKPT_TRY(bind_name(temp.get(), listen_name, NameFile::gone, nullptr, paths_));
      if (::listen(temp.get(), 1) < 0) return sys_error(fmt::format("{}: listen", what));
      listener = temp.get();
    }
    CKPT_TRY_ASSIGN(ScopedFd client, new_socket(type, what));
    CKPT_TRY(bind_name(client.get(), client_name, client_file, nullptr, paths_));
    CKPT_TRY(connect_to(client.get(), listen_name, what));
    ScopedFd server(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!server) return sys_error(fmt::format("{}: accept", what));
    return std::make_pair(std::move(client), std::move(server));
  }

  // The listener's waiting connections, connected again in order and left for accept().
  Status make_waiting(Sock& l) {
    for (auto& w : l.e.waiting) {
      Sock* client = w.peer != 0 ? find(w.peer) : nullptr;
      std::string who = fmt::format("a connection waiting on {}", what(l));
      CKPT_TRY_ASSIGN(ScopedFd fd, new_socket(l.e.sock_type, who));
      if (client) {
        set_buffers(fd.get(), client->e);
        CKPT_TRY(
            bind_name(fd.get(), client->e.name, NameFile(client->e.name_file), &client->e, paths_));
      }
      CKPT_TRY(connect_to(fd.get(), l.e.name, who));
      if (client) client->fd = std::move(fd);  // else closed: accept() finds its peer gone
    }
    return {};
  }

  // Each queued datagram sent to the socket's name from a socket bound to its sender's name.
  Status write_datagrams(Sock& r) {
    if (r.e.queue.empty()) return {};
    if (r.e.name.empty())
      return errorf("{}: datagrams are queued at an unnamed socket that is not a pair", what(r));
    socklen_t len = 0;
    CKPT_TRY_ASSIGN(sockaddr_un to, address_of(r.e.name, len));
    StandIns senders;
    for (size_t i = 0; i < r.e.queue.size(); ++i) {
      schema::Bytes from = i < r.e.from.size() ? r.e.from[i] : schema::Bytes{};
      CKPT_TRY_ASSIGN(ScopedFd temp, sender_for(from, what(r)));
      int sender = temp ? temp.get() : named(from)->fd.get();
      const auto& item = r.e.queue[i];
      CKPT_TRY_ASSIGN(std::vector<int> fds, rights_of(r.e, i, out_));
      const SenderCreds* creds = creds_of(r.e, i);
      CKPT_TRY(senders.cover(creds));
      if (send_with(sender, item.data(), item.size(), fds, &to, len, creds) !=
          static_cast<ssize_t>(item.size()))
        return sys_error(fmt::format("{}: refill datagram {} of {} ({} bytes) from {}", what(r),
                                     i + 1, r.e.queue.size(), item.size(), unix_name_text(from)));
    }
    return {};
  }

  Sock* named(const schema::Bytes& name) {
    if (name.empty()) return nullptr;
    for (auto& [ino, s] : socks_)
      if (s.fd && s.e.name == name && s.e.sock_type == SOCK_DGRAM) return &s;
    return nullptr;
  }
  // A socket of the image bound to `from` (then an empty ScopedFd), else a temporary one.
  Result<ScopedFd> sender_for(const schema::Bytes& from, const std::string& what) {
    if (named(from)) return ScopedFd();
    CKPT_TRY_ASSIGN(ScopedFd temp, new_socket(SOCK_DGRAM, what));
    CKPT_TRY(bind_name(temp.get(), from, NameFile::gone, nullptr, paths_));
    return temp;
  }

  const RecreateEnv& env_;
  Socks& socks_;
  const OpenedFiles& out_;  // the open files of other kinds, some of them in flight
  PathCleanup paths_;       // declared last: runs after the sockets are handed out
};

}  // namespace

Status recreate_unix_sockets(const RecreateEnv& env,
                             const std::vector<const schema::OpenFile*>& mine, OpenedFiles& out) {
  Socks socks;
  for (auto* of : mine) {
    CKPT_TRY_ASSIGN(UnixEnd e, payload_of<UnixEnd>(*of));
    uint64_t ino = e.ino;
    if (e.has_peer && e.peer == 0 && e.state == 0) e.state = 1;
    socks[ino] = Sock{of, std::move(e), ScopedFd()};
  }
  {
    Rebuild rebuild(env, socks, out);
    CKPT_TRY(rebuild.run());
  }
  for (auto& [ino, s] : socks) out[s.of->id] = std::move(s.fd);
  return {};
}

}  // namespace ckpt::fds
