// Listening TCP sockets (IPv4 and IPv6) whose accept queue is empty: address, backlog and the
// options that change what the program sees, read through a borrowed copy of the socket (no code
// runs in the target). The restorer creates, binds and listens again; a port taken meanwhile
// fails the restore, naming it. A queue with connections is refused, or with --tcp-close left out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>

#include "common/log.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inet.hpp"

namespace ckpt::fds {
namespace {

constexpr int kTcpListen = 0x0A;

// Options a listener keeps that change what the program sees (SO_KEEPALIVE and TCP_NODELAY pass
// on to every accepted connection). Saved by name, set again before bind.
struct SockOpt {
  const char* name;
  int level;
  int opt;
  bool v6_only;
};
constexpr SockOpt kOptions[] = {
    {"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR, false},
    {"SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT, false},
    {"SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, false},
    {"IPV6_V6ONLY", IPPROTO_IPV6, IPV6_V6ONLY, true},
    {"TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY, false},
    {"TCP_DEFER_ACCEPT", IPPROTO_TCP, TCP_DEFER_ACCEPT, false},
};

struct SockOptValue {
  std::string name;
  int32_t value = 0;
  template <class V>
  void visit(V& v) {
    v("name", name), v("value", value);
  }
};

struct ListenPayload {
  bool v6 = false;
  schema::Bytes addr;  // the in_addr or in6_addr, network order
  uint16_t port = 0;
  uint32_t scope_id = 0;
  int32_t backlog = 0;
  std::vector<SockOptValue> options;
  template <class V>
  void visit(V& v) {
    v("v6", v6), v("addr", addr), v("port", port), v("scope_id", scope_id), v("backlog", backlog);
    v("options", options);
  }
};

// `drop_waiting` (--skip-in-flight, --tcp-close): connections waiting to be accepted are left out
// instead of refusing the dump; their clients lose them, as they lost them when the original died.
Result<ListenPayload> describe(FdProbe& p, int sock, bool drop_waiting) {
  bool v6 = p.domain == AF_INET6;
  sockaddr_storage local{};
  socklen_t llen = sizeof(local);
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&local), &llen) < 0)
    return sys_error(fmt::format("getsockname of pid {} fd {}", p.pid, p.fd));
  std::string where = inet::sockaddr_text(local);
  CKPT_TRY_ASSIGN(auto line, inet::find_tcp_line(p.pid, static_cast<uint64_t>(p.st.st_ino), v6));
  if (!line || line->state != kTcpListen)
    return errorf(
        "pid {}: fd {} is a TCP socket on {} that /proc/{}/net/{} does not show listening", p.pid,
        p.fd, where, p.pid, v6 ? "tcp6" : "tcp");
  if (line->rx_queue != 0 && drop_waiting)
    log::info("dump",
              "pid {}: fd {}: the {} connection(s) waiting on {} are left out (--skip-in-flight)",
              p.pid, p.fd, line->rx_queue, where);
  else if (line->rx_queue != 0)
    return errorf(
        "pid {}: fd {} is a TCP socket listening on {} with {} connection(s) waiting to be "
        "accepted, which ckpt cannot save yet (--skip-in-flight leaves them out)",
        p.pid, p.fd, where, line->rx_queue);
  // For a listener TCP_INFO carries the backlog it was given (after the somaxconn cap).
  tcp_info info{};
  socklen_t ilen = sizeof(info);
  if (::getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &ilen) < 0)
    return sys_error(fmt::format("getsockopt TCP_INFO of pid {} fd {}", p.pid, p.fd));
  ListenPayload l;
  l.v6 = v6;
  l.backlog = static_cast<int32_t>(info.tcpi_sacked);
  if (v6) {
    auto& a = reinterpret_cast<const sockaddr_in6&>(local);
    auto* b = reinterpret_cast<const uint8_t*>(&a.sin6_addr);
    l.addr.assign(b, b + sizeof(a.sin6_addr));
    l.port = ntohs(a.sin6_port);
    l.scope_id = a.sin6_scope_id;
  } else {
    auto& a = reinterpret_cast<const sockaddr_in&>(local);
    auto* b = reinterpret_cast<const uint8_t*>(&a.sin_addr);
    l.addr.assign(b, b + sizeof(a.sin_addr));
    l.port = ntohs(a.sin_port);
  }
  for (auto& o : kOptions) {
    if (o.v6_only && !v6) continue;
    int v = int_sockopt(sock, o.level, o.opt);
    if (v < 0) return sys_error(fmt::format("getsockopt {} of pid {} fd {}", o.name, p.pid, p.fd));
    l.options.push_back({o.name, v});
  }
  return l;
}

Result<sockaddr_storage> address_of(const ListenPayload& l, socklen_t& len) {
  sockaddr_storage ss{};
  if (l.v6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    if (l.addr.size() != sizeof(a.sin6_addr)) return make_error("bad IPv6 address in the image");
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(l.port);
    a.sin6_scope_id = l.scope_id;
    std::memcpy(&a.sin6_addr, l.addr.data(), l.addr.size());
    len = sizeof(a);
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    if (l.addr.size() != sizeof(a.sin_addr)) return make_error("bad IPv4 address in the image");
    a.sin_family = AF_INET;
    a.sin_port = htons(l.port);
    std::memcpy(&a.sin_addr, l.addr.data(), l.addr.size());
    len = sizeof(a);
  }
  return ss;
}

Result<ScopedFd> create(const RecreateEnv& env, const schema::OpenFile& of,
                        const ListenPayload& l) {
  socklen_t len = 0;
  CKPT_TRY_ASSIGN(sockaddr_storage addr, address_of(l, len));
  std::string where = inet::sockaddr_text(addr);
  ScopedFd fd(::socket(l.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return sys_error(fmt::format("socket for {}", where));
  for (auto& o : kOptions)
    for (auto& saved : l.options) {
      if (saved.name != o.name) continue;
      int v = saved.value;
      if (::setsockopt(fd.get(), o.level, o.opt, &v, sizeof(v)) < 0)
        return sys_error(fmt::format("setsockopt {} for {}", o.name, where));
    }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) < 0)
    return sys_error(fmt::format("{}: listen again on {}", env.holder(of.id), where));
  if (::listen(fd.get(), l.backlog) < 0) return sys_error(fmt::format("listen on {}", where));
  CKPT_TRY(set_status_flags(fd.get(), of.flags, where));
  return fd;
}

class TcpListenKind final : public FdKind {
 public:
  std::string_view name() const override { return "tcp_listen"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    if ((p.domain != AF_INET && p.domain != AF_INET6) || p.type != SOCK_STREAM ||
        p.protocol != IPPROTO_TCP)
      return false;
    auto sock = p.borrowed();
    return sock.ok() && int_sockopt(*sock, SOL_SOCKET, SO_ACCEPTCONN) == 1;
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    CKPT_TRY_ASSIGN(ListenPayload l, describe(p, sock, env.flags.skip_in_flight));
    of.payload = schema::encode(l);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(ListenPayload l, payload_of<ListenPayload>(*of));
      CKPT_TRY_ASSIGN(out[of->id], create(env, *of, l));
    }
    return {};
  }
};

}  // namespace

const FdKind& tcp_listen_kind() {
  static const TcpListenKind kind;
  return kind;
}

}  // namespace ckpt::fds
