// UDP sockets (IPv4 and IPv6): the bound address, the connected peer and the options a program
// sets, read through the borrowed copy. The restorer makes the socket again, options first (some
// only count before bind), then binds and connects. Datagrams waiting in the receive queue are
// not kept (as CRIU): UDP may lose datagrams, and one cannot be sent again from its original
// source; the dump logs how many bytes it leaves. Multicast groups joined, with their source
// filters, are joined again (udp_multicast.hpp). A socket shut down (which sends nothing) is
// shut down again: sock_diag tells how (inet_diag.hpp); an unbound socket, which sock_diag does
// not list, only through poll(), which cannot show a shutdown for writing alone.
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/log.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inet_diag.hpp"
#include "resources/fds/inet_state.hpp"
#include "resources/fds/udp_multicast.hpp"

namespace ckpt::fds {
namespace {

// In the order they are set again: those that decide what bind() may do come first.
const inet::OptionSpec kOptions[] = {
    {"IPV6_V6ONLY", IPPROTO_IPV6, IPV6_V6ONLY, true},
    {"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR},
    {"SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT},
    {"SO_BROADCAST", SOL_SOCKET, SO_BROADCAST},
    {"SO_SNDBUF", SOL_SOCKET, SO_SNDBUF, false, true},
    {"SO_RCVBUF", SOL_SOCKET, SO_RCVBUF, false, true},
    {"SO_PRIORITY", SOL_SOCKET, SO_PRIORITY},
    {"SO_TIMESTAMP", SOL_SOCKET, SO_TIMESTAMP},
    {"IP_TOS", IPPROTO_IP, IP_TOS},
    {"IP_TTL", IPPROTO_IP, IP_TTL},
    {"IP_PKTINFO", IPPROTO_IP, IP_PKTINFO},
    {"IP_RECVERR", IPPROTO_IP, IP_RECVERR},
    {"IP_MULTICAST_IF", IPPROTO_IP, IP_MULTICAST_IF},  // the interface's address, as an int
    {"IP_MULTICAST_TTL", IPPROTO_IP, IP_MULTICAST_TTL},
    {"IP_MULTICAST_LOOP", IPPROTO_IP, IP_MULTICAST_LOOP},
    {"IP_MULTICAST_ALL", IPPROTO_IP, IP_MULTICAST_ALL},
    {"IPV6_RECVPKTINFO", IPPROTO_IPV6, IPV6_RECVPKTINFO, true},
    {"IPV6_MULTICAST_IF", IPPROTO_IPV6, IPV6_MULTICAST_IF, true},
    {"IPV6_MULTICAST_HOPS", IPPROTO_IPV6, IPV6_MULTICAST_HOPS, true},
    {"IPV6_MULTICAST_LOOP", IPPROTO_IPV6, IPV6_MULTICAST_LOOP, true},
    {"IPV6_UNICAST_HOPS", IPPROTO_IPV6, IPV6_UNICAST_HOPS, true},
};

struct UdpPayload {
  bool v6 = false;
  std::optional<inet::Endpoint> local;  // when bound (explicitly or by a send or connect)
  std::optional<inet::Endpoint> peer;   // when connected
  std::vector<inet::IntOption> options;
  std::optional<std::vector<multicast::Membership>> groups;  // absent: none joined
  std::optional<int32_t> shutdown;  // kRcvShutdown | kSendShutdown (fd_access.hpp); absent: none
  template <class V>
  void visit(V& v) {
    v("v6", v6), v("local", local), v("peer", peer), v("options", options), v("groups", groups);
    v("shutdown", shutdown);
  }
};

Result<int> shutdown_state(FdProbe& p, int sock, const UdpPayload& u) {
  if (u.local) {
    auto listed = inet_diag::shutdown_of(p.domain, IPPROTO_UDP, u.local->port,
                                         static_cast<uint64_t>(p.st.st_ino));
    if (listed.ok()) return listed;
    // Not listed to the dumper (another network namespace's table): poll() below.
    log::info("dump", "pid {}: fd {}: {}", p.pid, p.fd, listed.error().message);
  }
  pollfd pfd{sock, POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) < 0) return sys_error(fmt::format("poll of pid {} fd {}", p.pid, p.fd));
  if (pfd.revents & POLLHUP) return kRcvShutdown | kSendShutdown;
  return (pfd.revents & POLLRDHUP) ? kRcvShutdown : 0;
}

Result<UdpPayload> describe(FdProbe& p, int sock) {
  std::string what = fmt::format("pid {} fd {}", p.pid, p.fd);
  UdpPayload u;
  u.v6 = p.domain == AF_INET6;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return sys_error(fmt::format("getsockname of {}", what));
  if (auto e = inet::endpoint_of(ss); e.port != 0) u.local = e;
  len = sizeof(ss);
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    u.peer = inet::endpoint_of(ss);
  else if (errno != ENOTCONN)
    return sys_error(fmt::format("getpeername of {}", what));
  CKPT_TRY_ASSIGN(u.options, inet::read_options(sock, kOptions, u.v6, what));
  CKPT_TRY_ASSIGN(auto groups, multicast::read(sock, u.v6, what));
  if (!groups.empty()) u.groups = std::move(groups);
  CKPT_TRY_ASSIGN(int shut, shutdown_state(p, sock, u));
  if (shut != 0) u.shutdown = shut;
  int queued = 0;
  if (::ioctl(sock, SIOCINQ, &queued) == 0 && queued > 0)
    log::warn("dump", "pid {}: fd {}: a queued UDP datagram ({} bytes) is not saved", p.pid, p.fd,
              queued);
  return u;
}

Result<ScopedFd> create(const RecreateEnv& env, const schema::OpenFile& of, const UdpPayload& u) {
  std::string what = fmt::format("{}: UDP socket{}", env.holder(of.id),
                                 u.local ? " on " + inet::endpoint_text(*u.local) : "");
  ScopedFd fd(::socket(u.v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!fd) return sys_error(fmt::format("socket for {}", what));
  CKPT_TRY(inet::apply_options(fd.get(), kOptions, u.options, what));
  socklen_t len = 0;
  if (u.local) {
    CKPT_TRY_ASSIGN(sockaddr_storage a, inet::sockaddr_of(*u.local, len));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) < 0)
      return sys_error(fmt::format("{}: bind again", what));
  }
  if (u.peer) {
    CKPT_TRY_ASSIGN(sockaddr_storage a, inet::sockaddr_of(*u.peer, len));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), len) < 0)
      return sys_error(fmt::format("{}: connect to {}", what, inet::endpoint_text(*u.peer)));
  }
  if (u.groups) CKPT_TRY(multicast::join(fd.get(), u.v6, *u.groups, what));
  // An unconnected socket is shut down all the same, with ENOTCONN.
  if (u.shutdown.value_or(0) != 0 && ::shutdown(fd.get(), shutdown_how(*u.shutdown)) < 0 &&
      errno != ENOTCONN)
    return sys_error(fmt::format("{}: shutdown", what));
  CKPT_TRY(set_status_flags(fd.get(), of.flags, what));
  return fd;
}

class UdpKind final : public FdKind {
 public:
  std::string_view name() const override { return "udp"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return (p.domain == AF_INET || p.domain == AF_INET6) && p.type == SOCK_DGRAM &&
           p.protocol == IPPROTO_UDP;
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    CKPT_TRY_ASSIGN(UdpPayload u, describe(p, sock));
    of.payload = schema::encode(u);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(UdpPayload u, payload_of<UdpPayload>(*of));
      CKPT_TRY_ASSIGN(out[of->id], create(env, *of, u));
    }
    return {};
  }
};

}  // namespace

const FdKind& udp_kind() {
  static const UdpKind kind;
  return kind;
}

}  // namespace ckpt::fds
