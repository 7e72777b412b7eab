// Netlink sockets (NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT, generic netlink...): protocol, type,
// the port id it is bound to, every multicast group it joined (NETLINK_LIST_MEMBERSHIPS), the
// destination it is connected to and its options. The restorer opens the same protocol, binds
// the same port id and joins the groups again. Messages waiting to be read are not kept: they
// answered requests of the past or announced events, and a program reading netlink is written
// for ENOBUFS-like loss anyway; the dump logs their size.
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/log.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inet_state.hpp"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace ckpt::fds {
namespace {

const inet::OptionSpec kOptions[] = {
    {"SO_SNDBUF", SOL_SOCKET, SO_SNDBUF, false, true},
    {"SO_RCVBUF", SOL_SOCKET, SO_RCVBUF, false, true},
    {"NETLINK_PKTINFO", SOL_NETLINK, NETLINK_PKTINFO},
    {"NETLINK_NO_ENOBUFS", SOL_NETLINK, NETLINK_NO_ENOBUFS},
    {"NETLINK_CAP_ACK", SOL_NETLINK, NETLINK_CAP_ACK},
    {"NETLINK_EXT_ACK", SOL_NETLINK, NETLINK_EXT_ACK},
    {"NETLINK_GET_STRICT_CHK", SOL_NETLINK, NETLINK_GET_STRICT_CHK},
    {"NETLINK_BROADCAST_ERROR", SOL_NETLINK, NETLINK_BROADCAST_ERROR},
};

struct NetlinkPayload {
  int32_t type = 0;
  int32_t protocol = 0;
  uint32_t port_id = 0;          // 0: never bound (the kernel picks one at the first send)
  std::vector<uint32_t> groups;  // joined multicast groups, numbered from 1
  uint32_t peer_port_id = 0;     // connected destination (0 is the kernel)
  uint32_t peer_groups = 0;      // its group mask
  bool connected = false;
  std::vector<inet::IntOption> options;
  template <class V>
  void visit(V& v) {
    v("type", type), v("protocol", protocol), v("port_id", port_id), v("groups", groups);
    v("peer_port_id", peer_port_id), v("peer_groups", peer_groups), v("connected", connected);
    v("options", options);
  }
};

Result<std::vector<uint32_t>> memberships(int sock, std::string_view what) {
  std::vector<uint32_t> mask(32);
  socklen_t len = static_cast<socklen_t>(mask.size() * sizeof(uint32_t));
  if (::getsockopt(sock, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, mask.data(), &len) < 0)
    return sys_error(fmt::format("getsockopt NETLINK_LIST_MEMBERSHIPS of {}", what));
  // The kernel says how long the mask really is: ask again with room for all of it.
  if (len > mask.size() * sizeof(uint32_t)) {
    mask.resize(len / sizeof(uint32_t));
    if (::getsockopt(sock, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, mask.data(), &len) < 0)
      return sys_error(fmt::format("getsockopt NETLINK_LIST_MEMBERSHIPS of {}", what));
  }
  std::vector<uint32_t> groups;
  for (size_t w = 0; w < len / sizeof(uint32_t); ++w)
    for (uint32_t b = 0; b < 32; ++b)
      if (mask[w] & (1u << b)) groups.push_back(static_cast<uint32_t>(w * 32 + b + 1));
  return groups;
}

Result<NetlinkPayload> describe(FdProbe& p, int sock) {
  std::string what = fmt::format("pid {} fd {}", p.pid, p.fd);
  NetlinkPayload n;
  n.type = p.type;
  n.protocol = p.protocol;
  sockaddr_nl a{};
  socklen_t len = sizeof(a);
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&a), &len) < 0)
    return sys_error(fmt::format("getsockname of {}", what));
  n.port_id = a.nl_pid;
  CKPT_TRY_ASSIGN(n.groups, memberships(sock, what));
  len = sizeof(a);
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&a), &len) < 0)
    return sys_error(fmt::format("getpeername of {}", what));
  n.connected = a.nl_pid != 0 || a.nl_groups != 0;
  n.peer_port_id = a.nl_pid;
  n.peer_groups = a.nl_groups;
  CKPT_TRY_ASSIGN(n.options, inet::read_options(sock, kOptions, false, what));
  int queued = 0;
  if (::ioctl(sock, SIOCINQ, &queued) == 0 && queued > 0)
    log::warn("dump", "pid {}: fd {}: {} bytes of netlink messages waiting are not saved", p.pid,
              p.fd, queued);
  return n;
}

Result<ScopedFd> create(const RecreateEnv& env, const schema::OpenFile& of,
                        const NetlinkPayload& n) {
  std::string what = fmt::format("{}: netlink socket (protocol {}, port id {})", env.holder(of.id),
                                 n.protocol, n.port_id);
  ScopedFd fd(::socket(AF_NETLINK, n.type | SOCK_CLOEXEC, n.protocol));
  if (!fd) return sys_error(fmt::format("socket for {}", what));
  CKPT_TRY(inet::apply_options(fd.get(), kOptions, n.options, what));
  if (n.port_id != 0) {
    sockaddr_nl a{};
    a.nl_family = AF_NETLINK;
    a.nl_pid = n.port_id;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0)
      return sys_error(fmt::format("{}: bind", what));
  }
  for (uint32_t g : n.groups)
    if (::setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)) < 0)
      return sys_error(fmt::format("{}: join group {}", what, g));
  if (n.connected) {
    sockaddr_nl a{};
    a.nl_family = AF_NETLINK;
    a.nl_pid = n.peer_port_id;
    a.nl_groups = n.peer_groups;
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0)
      return sys_error(fmt::format("{}: connect", what));
  }
  CKPT_TRY(set_status_flags(fd.get(), of.flags, what));
  return fd;
}

class NetlinkKind final : public FdKind {
 public:
  std::string_view name() const override { return "netlink"; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return p.domain == AF_NETLINK; }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    CKPT_TRY_ASSIGN(NetlinkPayload n, describe(p, sock));
    of.payload = schema::encode(n);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(NetlinkPayload n, payload_of<NetlinkPayload>(*of));
      CKPT_TRY_ASSIGN(out[of->id], create(env, *of, n));
    }
    return {};
  }
};

}  // namespace

const FdKind& netlink_kind() {
  static const NetlinkKind kind;
  return kind;
}

}  // namespace ckpt::fds
