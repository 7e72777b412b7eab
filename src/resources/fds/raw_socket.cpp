// Raw IP sockets (IPv4 and IPv6, any protocol: ping's ICMP sockets, routing daemons): protocol,
// bound address and device, connected peer, options, the ICMP type filter and an attached
// classic BPF filter (ping installs one to see only its own replies), read through the borrowed
// copy. Packets waiting in the receive queue are not kept (as for UDP): they came from elsewhere
// and cannot be queued again, and IP may lose datagrams; the dump says how many bytes it leaves.
// Refusing instead would make some programs impossible to dump: ping opens an IPv4 and an IPv6
// socket, uses one, and the other collects every ICMP packet of the host, never read.
#include <linux/filter.h>
#include <linux/icmp.h>
#include <linux/sockios.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inet_state.hpp"

namespace ckpt::fds {
namespace {

const inet::OptionSpec kCommon[] = {
    {"SO_SNDBUF", SOL_SOCKET, SO_SNDBUF, false, true},
    {"SO_RCVBUF", SOL_SOCKET, SO_RCVBUF, false, true},
    {"SO_PRIORITY", SOL_SOCKET, SO_PRIORITY},
    {"SO_MARK", SOL_SOCKET, SO_MARK},
    {"SO_BROADCAST", SOL_SOCKET, SO_BROADCAST},
    {"SO_DEBUG", SOL_SOCKET, SO_DEBUG},
    {"SO_TIMESTAMP", SOL_SOCKET, SO_TIMESTAMP},
    {"SO_TIMESTAMPNS", SOL_SOCKET, SO_TIMESTAMPNS},
};
const inet::OptionSpec kV4[] = {
    {"IP_HDRINCL", IPPROTO_IP, IP_HDRINCL},
    {"IP_TOS", IPPROTO_IP, IP_TOS},
    {"IP_TTL", IPPROTO_IP, IP_TTL},
    {"IP_MTU_DISCOVER", IPPROTO_IP, IP_MTU_DISCOVER},
    {"IP_RECVERR", IPPROTO_IP, IP_RECVERR},
    {"IP_RECVTTL", IPPROTO_IP, IP_RECVTTL},
    {"IP_RECVTOS", IPPROTO_IP, IP_RECVTOS},
    {"IP_PKTINFO", IPPROTO_IP, IP_PKTINFO},
    {"IP_MULTICAST_TTL", IPPROTO_IP, IP_MULTICAST_TTL},
    {"IP_MULTICAST_LOOP", IPPROTO_IP, IP_MULTICAST_LOOP},
};
const inet::OptionSpec kV6[] = {
    {"IPV6_UNICAST_HOPS", IPPROTO_IPV6, IPV6_UNICAST_HOPS, true},
    {"IPV6_MULTICAST_HOPS", IPPROTO_IPV6, IPV6_MULTICAST_HOPS, true},
    {"IPV6_MULTICAST_LOOP", IPPROTO_IPV6, IPV6_MULTICAST_LOOP, true},
    {"IPV6_MTU_DISCOVER", IPPROTO_IPV6, IPV6_MTU_DISCOVER, true},
    {"IPV6_RECVERR", IPPROTO_IPV6, IPV6_RECVERR, true},
    {"IPV6_RECVHOPLIMIT", IPPROTO_IPV6, IPV6_RECVHOPLIMIT, true},
    {"IPV6_RECVPKTINFO", IPPROTO_IPV6, IPV6_RECVPKTINFO, true},
    {"IPV6_TCLASS", IPPROTO_IPV6, IPV6_TCLASS, true},
};
// The kernel computes ICMPv6 checksums itself and refuses IPV6_CHECKSUM on those sockets.
const inet::OptionSpec kV6Checksum[] = {{"IPV6_CHECKSUM", IPPROTO_IPV6, IPV6_CHECKSUM, true}};

struct BpfInstruction {
  uint16_t code = 0;
  uint8_t jt = 0, jf = 0;
  uint32_t k = 0;
  template <class V>
  void visit(V& v) {
    v("code", code), v("jt", jt), v("jf", jf), v("k", k);
  }
};

struct RawPayload {
  bool v6 = false;
  int32_t protocol = 0;
  std::optional<inet::Endpoint> local;  // when bound to an address
  std::optional<inet::Endpoint> peer;   // when connected
  std::string device;                   // SO_BINDTODEVICE
  std::vector<inet::IntOption> options;
  std::optional<schema::Bytes> icmp_filter;  // ICMP_FILTER or ICMP6_FILTER as the kernel gives it
  std::optional<std::vector<BpfInstruction>> bpf;  // SO_ATTACH_FILTER (classic BPF)
  bool bpf_locked = false;                         // SO_LOCK_FILTER
  template <class V>
  void visit(V& v) {
    v("v6", v6), v("protocol", protocol), v("local", local), v("peer", peer), v("device", device),
        v("options", options), v("icmp_filter", icmp_filter), v("bpf", bpf),
        v("bpf_locked", bpf_locked);
  }
};

bool is_any(const inet::Endpoint& e) {
  return std::all_of(e.addr.begin(), e.addr.end(), [](uint8_t b) { return b == 0; });
}

std::vector<inet::OptionSpec> option_specs(bool v6, int protocol) {
  std::vector<inet::OptionSpec> out(std::begin(kCommon), std::end(kCommon));
  if (!v6) out.insert(out.end(), std::begin(kV4), std::end(kV4));
  if (v6) out.insert(out.end(), std::begin(kV6), std::end(kV6));
  if (v6 && protocol != IPPROTO_ICMPV6)
    out.insert(out.end(), std::begin(kV6Checksum), std::end(kV6Checksum));
  return out;
}

// The ICMP type filter of an ICMP raw socket, if it is one.
Result<std::optional<schema::Bytes>> read_icmp_filter(int sock, const RawPayload& r,
                                                      const std::string& what) {
  int level = r.v6 ? IPPROTO_ICMPV6 : SOL_RAW;
  int opt = r.v6 ? ICMP6_FILTER : ICMP_FILTER;
  if (r.protocol != (r.v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) return std::optional<schema::Bytes>();
  schema::Bytes buf(r.v6 ? sizeof(icmp6_filter) : sizeof(icmp_filter));
  socklen_t len = static_cast<socklen_t>(buf.size());
  if (::getsockopt(sock, level, opt, buf.data(), &len) < 0)
    return sys_error(fmt::format("getsockopt ICMP filter of {}", what));
  buf.resize(len);
  return std::optional<schema::Bytes>(std::move(buf));
}

Result<std::optional<std::vector<BpfInstruction>>> read_bpf(int sock, const std::string& what) {
  socklen_t count = 0;  // SO_GET_FILTER counts instructions, not bytes
  if (::getsockopt(sock, SOL_SOCKET, SO_GET_FILTER, nullptr, &count) < 0)
    return sys_error(fmt::format("{}: its socket filter (an eBPF program?) cannot be read", what));
  if (count == 0) return std::optional<std::vector<BpfInstruction>>();
  std::vector<sock_filter> prog(count);
  if (::getsockopt(sock, SOL_SOCKET, SO_GET_FILTER, prog.data(), &count) < 0)
    return sys_error(fmt::format("getsockopt SO_GET_FILTER of {}", what));
  std::vector<BpfInstruction> out;
  for (size_t i = 0; i < count; ++i)
    out.push_back({prog[i].code, prog[i].jt, prog[i].jf, prog[i].k});
  return std::optional<std::vector<BpfInstruction>>(std::move(out));
}

Result<RawPayload> describe(FdProbe& p, int sock) {
  std::string what = fmt::format("pid {}: fd {} (a raw IP socket)", p.pid, p.fd);
  int queued = 0;
  if (::ioctl(sock, SIOCINQ, &queued) == 0 && queued > 0)
    log::warn("dump", "{}: a packet waiting to be read ({} bytes, and any behind it) is not saved",
              what, queued);
  RawPayload r;
  r.v6 = p.domain == AF_INET6;
  r.protocol = p.protocol;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return sys_error(fmt::format("getsockname of {}", what));
  if (auto e = inet::endpoint_of(ss); !is_any(e)) r.local = e;
  len = sizeof(ss);
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    r.peer = inet::endpoint_of(ss);
  else if (errno != ENOTCONN)
    return sys_error(fmt::format("getpeername of {}", what));
  char dev[IFNAMSIZ] = {};
  len = sizeof(dev);
  if (::getsockopt(sock, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) < 0)
    return sys_error(fmt::format("getsockopt SO_BINDTODEVICE of {}", what));
  r.device.assign(dev, strnlen(dev, sizeof(dev)));
  CKPT_TRY_ASSIGN(r.options, inet::read_options(sock, option_specs(r.v6, r.protocol), r.v6, what));
  CKPT_TRY_ASSIGN(r.icmp_filter, read_icmp_filter(sock, r, what));
  CKPT_TRY_ASSIGN(r.bpf, read_bpf(sock, what));
  int locked = 0;
  len = sizeof(locked);
  if (::getsockopt(sock, SOL_SOCKET, SO_LOCK_FILTER, &locked, &len) == 0) r.bpf_locked = locked;
  return r;
}

Status set_filters(int fd, const RawPayload& r, const std::string& what) {
  if (r.icmp_filter) {
    int level = r.v6 ? IPPROTO_ICMPV6 : SOL_RAW;
    int opt = r.v6 ? ICMP6_FILTER : ICMP_FILTER;
    if (::setsockopt(fd, level, opt, r.icmp_filter->data(),
                     static_cast<socklen_t>(r.icmp_filter->size())) < 0)
      return sys_error(fmt::format("{}: set its ICMP filter again", what));
  }
  if (r.bpf) {
    std::vector<sock_filter> prog;
    for (auto& i : *r.bpf) prog.push_back({i.code, i.jt, i.jf, i.k});
    sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) < 0)
      return sys_error(fmt::format("{}: attach its socket filter again", what));
  }
  int one = 1;
  if (r.bpf_locked && ::setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0)
    return sys_error(fmt::format("{}: lock its socket filter again", what));
  return {};
}

Result<ScopedFd> create(const RecreateEnv& env, const schema::OpenFile& of, const RawPayload& r) {
  std::string what = fmt::format("{}: raw IP socket (protocol {})", env.holder(of.id), r.protocol);
  ScopedFd fd(::socket(r.v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, r.protocol));
  if (!fd) return sys_error(fmt::format("socket for {}", what));
  CKPT_TRY(inet::apply_options(fd.get(), option_specs(r.v6, r.protocol), r.options, what));
  if (!r.device.empty() && ::setsockopt(fd.get(), SOL_SOCKET, SO_BINDTODEVICE, r.device.data(),
                                        static_cast<socklen_t>(r.device.size())) < 0)
    return sys_error(fmt::format("{}: bind to device {}", what, r.device));
  socklen_t len = 0;
  if (r.local) {
    CKPT_TRY_ASSIGN(sockaddr_storage a, inet::sockaddr_of(*r.local, len));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) < 0)
      return sys_error(fmt::format("{}: bind to {}", what, inet::endpoint_text(*r.local)));
  }
  if (r.peer) {
    CKPT_TRY_ASSIGN(sockaddr_storage a, inet::sockaddr_of(*r.peer, len));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), len) < 0)
      return sys_error(fmt::format("{}: connect to {}", what, inet::endpoint_text(*r.peer)));
  }
  CKPT_TRY(set_filters(fd.get(), r, what));
  CKPT_TRY(set_status_flags(fd.get(), of.flags, what));
  return fd;
}

class RawSocketKind final : public FdKind {
 public:
  std::string_view name() const override { return "raw"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return (p.domain == AF_INET || p.domain == AF_INET6) && p.type == SOCK_RAW;
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    CKPT_TRY_ASSIGN(RawPayload r, describe(p, sock));
    of.payload = schema::encode(r);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(RawPayload r, payload_of<RawPayload>(*of));
      CKPT_TRY_ASSIGN(out[of->id], create(env, *of, r));
    }
    return {};
  }
};

}  // namespace

const FdKind& raw_socket_kind() {
  static const RawSocketKind kind;
  return kind;
}

}  // namespace ckpt::fds
