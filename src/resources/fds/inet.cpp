#include "resources/fds/inet.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "proc/proc_file.hpp"

namespace ckpt::fds::inet {
namespace {

// The hex words of /proc/net/tcp are the address's 32-bit words printed in host byte order.
std::optional<std::string> hex_address(std::string_view hex, bool v6) {
  size_t words = v6 ? 4 : 1;
  if (hex.size() != words * 8) return std::nullopt;
  uint32_t raw[4] = {};
  for (size_t i = 0; i < words; ++i) {
    auto w = proc::parse_u64(hex.substr(i * 8, 8), 16);
    if (!w) return std::nullopt;
    raw[i] = static_cast<uint32_t>(*w);
  }
  char buf[INET6_ADDRSTRLEN];
  if (!::inet_ntop(v6 ? AF_INET6 : AF_INET, raw, buf, sizeof(buf))) return std::nullopt;
  return std::string(buf);
}

std::string host_port(const std::string& host, unsigned port, bool v6) {
  return v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

}  // namespace

std::optional<TcpLine> parse_tcp_line(std::string_view line, bool v6) {
  std::string_view rest = line;
  std::string_view slot = proc::next_token(rest);
  if (slot.empty() || slot.back() != ':' || !proc::parse_u64(slot.substr(0, slot.size() - 1)))
    return std::nullopt;
  std::string_view local = proc::next_token(rest);
  proc::next_token(rest);  // remote address
  std::string_view state = proc::next_token(rest);
  std::string_view queues = proc::next_token(rest);
  for (int i = 0; i < 4; ++i) proc::next_token(rest);  // tr:tm->when retrnsmt uid timeout
  std::string_view inode = proc::next_token(rest);
  size_t colon = local.find(':');
  size_t qcolon = queues.find(':');
  if (colon == std::string_view::npos || qcolon == std::string_view::npos) return std::nullopt;
  auto host = hex_address(local.substr(0, colon), v6);
  auto port = proc::parse_u64(local.substr(colon + 1), 16);
  auto st = proc::parse_u64(state, 16);
  auto tx = proc::parse_u64(queues.substr(0, qcolon), 16);
  auto rx = proc::parse_u64(queues.substr(qcolon + 1), 16);
  auto ino = proc::parse_u64(inode);
  if (!host || !port || *port > 0xffff || !st || !tx || !rx || !ino) return std::nullopt;
  return TcpLine{host_port(*host, static_cast<unsigned>(*port), v6), static_cast<int>(*st), *tx,
                 *rx, *ino};
}

Result<std::optional<TcpLine>> find_tcp_line(pid_t pid, uint64_t inode, bool v6) {
  CKPT_TRY_ASSIGN(std::string text, proc::read_proc_file(pid, v6 ? "net/tcp6" : "net/tcp"));
  std::string_view rest = text, line;
  while (proc::next_line(rest, line)) {
    auto parsed = parse_tcp_line(line, v6);
    if (parsed && parsed->inode == inode) return std::optional<TcpLine>(*parsed);
  }
  return std::optional<TcpLine>();
}

std::string sockaddr_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
    return host_port(buf, ntohs(a.sin_port), false);
  }
  if (ss.ss_family == AF_INET6) {
    auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof(buf));
    return host_port(buf, ntohs(a.sin6_port), true);
  }
  return "an address of family " + std::to_string(ss.ss_family);
}

std::string describe_socket(int fd, int domain, int type) {
  if (domain == AF_UNIX) return "a unix socket";
  if (domain == AF_PACKET) return "a packet socket (AF_PACKET)";
  if (domain != AF_INET && domain != AF_INET6)
    return fmt::format("a socket of address family {}", domain);
  sockaddr_storage local{}, peer{};
  socklen_t llen = sizeof(local), plen = sizeof(peer);
  bool bound = ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) == 0;
  bool connected = ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0;
  int protocol = 0;
  socklen_t len = sizeof(protocol);
  (void)::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len);
  bool icmp = protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6;
  const char* proto = type == SOCK_STREAM          ? "TCP"
                      : type == SOCK_DGRAM && icmp ? "ICMP datagram (ping)"
                      : type == SOCK_DGRAM         ? "UDP"
                                                   : "raw IP";
  if (connected)
    return fmt::format("a connected {} socket {} -> {}", proto, sockaddr_text(local),
                       sockaddr_text(peer));
  if (bound && reinterpret_cast<sockaddr_in&>(local).sin_port != 0)
    return fmt::format("a {} socket on {}", proto, sockaddr_text(local));
  return fmt::format("an unbound {} socket", proto);
}

}  // namespace ckpt::fds::inet
