#include "resources/fds/tcp_fin.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <span>
#include <vector>

#include "common/scoped_fd.hpp"

namespace ckpt::fds::tcp_fin {
namespace {

constexpr uint8_t kFinAck = 0x11;
constexpr size_t kTcpHeader = 20;

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

// The Internet checksum over the pseudo header and the segment.
uint16_t checksum(std::span<const uint8_t> pseudo, std::span<const uint8_t> segment) {
  uint32_t sum = 0;
  for (auto part : {pseudo, segment})
    for (size_t i = 0; i < part.size(); i += 2)
      sum += (uint32_t{part[i]} << 8) | (i + 1 < part.size() ? part[i + 1] : 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::array<uint8_t, kTcpHeader> tcp_header(const PeerFin& f) {
  std::array<uint8_t, kTcpHeader> h{};
  put16(&h[0], f.conn.peer_port);
  put16(&h[2], f.conn.local_port);
  put32(&h[4], f.seq);
  put32(&h[8], f.ack);
  h[12] = (kTcpHeader / 4) << 4;
  h[13] = kFinAck;
  put16(&h[14], f.window);
  return h;
}

// An IPv6 socket whose peer is IPv4 (::ffff:a.b.c.d) gets IPv4 packets.
bool is_v4(const netlock::Connection& c) {
  if (!c.v6) return true;
  return IN6_IS_ADDR_V4MAPPED(reinterpret_cast<const in6_addr*>(c.local.data()));
}

std::vector<uint8_t> ipv4_packet(const PeerFin& f, const uint8_t* peer, const uint8_t* local) {
  auto tcp = tcp_header(f);
  std::array<uint8_t, 12> pseudo{};
  std::memcpy(&pseudo[0], peer, 4);
  std::memcpy(&pseudo[4], local, 4);
  pseudo[9] = IPPROTO_TCP;
  put16(&pseudo[10], kTcpHeader);
  put16(&tcp[16], checksum(pseudo, tcp));
  std::vector<uint8_t> p(20 + kTcpHeader);
  p[0] = 0x45;
  put16(&p[2], static_cast<uint16_t>(p.size()));
  put16(&p[6], 0x4000);  // don't fragment
  p[8] = 64;
  p[9] = IPPROTO_TCP;
  std::memcpy(&p[12], peer, 4);  // the header checksum is the kernel's (IP_HDRINCL)
  std::memcpy(&p[16], local, 4);
  std::memcpy(&p[20], tcp.data(), tcp.size());
  return p;
}

std::vector<uint8_t> ipv6_packet(const PeerFin& f) {
  auto tcp = tcp_header(f);
  std::array<uint8_t, 40> pseudo{};
  std::memcpy(&pseudo[0], f.conn.peer.data(), 16);
  std::memcpy(&pseudo[16], f.conn.local.data(), 16);
  put32(&pseudo[32], kTcpHeader);
  pseudo[39] = IPPROTO_TCP;
  put16(&tcp[16], checksum(pseudo, tcp));
  std::vector<uint8_t> p(40 + kTcpHeader);
  p[0] = 0x60;
  put16(&p[4], kTcpHeader);
  p[6] = IPPROTO_TCP;
  p[7] = 64;
  std::memcpy(&p[8], f.conn.peer.data(), 16);
  std::memcpy(&p[24], f.conn.local.data(), 16);
  std::memcpy(&p[40], tcp.data(), tcp.size());
  return p;
}

}  // namespace

Status send(const PeerFin& f) {
  std::string what = "the peer's FIN for TCP " + netlock::text(f.conn);
  size_t alen = f.conn.v6 ? 16 : 4;
  if (f.conn.local.size() != alen || f.conn.peer.size() != alen)
    return errorf("{}: addresses of {} bytes", what, f.conn.local.size());
  bool v4 = is_v4(f.conn);
  // IPPROTO_RAW: the header is ours (IP_HDRINCL, IPV6_HDRINCL), so the source is the peer's.
  ScopedFd raw(::socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw) return sys_error(fmt::format("raw socket for {}", what));
  uint32_t mark = netlock::kPassMark;
  if (::setsockopt(raw.get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0)
    return sys_error(fmt::format("SO_MARK for {}", what));
  std::vector<uint8_t> packet;
  sockaddr_storage to{};
  socklen_t tolen;
  if (v4) {
    size_t off = f.conn.v6 ? 12 : 0;  // the IPv4 address inside ::ffff:a.b.c.d
    packet = ipv4_packet(f, f.conn.peer.data() + off, f.conn.local.data() + off);
    auto& a = reinterpret_cast<sockaddr_in&>(to);
    a.sin_family = AF_INET;
    std::memcpy(&a.sin_addr, f.conn.local.data() + off, 4);
    tolen = sizeof a;
  } else {
    packet = ipv6_packet(f);
    auto& a = reinterpret_cast<sockaddr_in6&>(to);
    a.sin6_family = AF_INET6;
    std::memcpy(&a.sin6_addr, f.conn.local.data(), 16);
    tolen = sizeof a;
  }
  if (::sendto(raw.get(), packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to),
               tolen) != static_cast<ssize_t>(packet.size()))
    return sys_error(fmt::format("send {}", what));
  return {};
}

}  // namespace ckpt::fds::tcp_fin
