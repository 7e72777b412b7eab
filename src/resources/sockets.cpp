#include "resources/sockets.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/scoped_fd.hpp"
#include "proc/proc_file.hpp"
#include "resources/files.hpp"
#include "resources/unix_sockets.hpp"

namespace ckpt::sockets {
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

int int_opt(int fd, int level, int opt) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
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

// "a UDP socket on 127.0.0.1:53", "a connected TCP socket 127.0.0.1:80 -> 10.0.0.2:4242"...
std::string what_socket(int fd, int domain, int type) {
  if (domain == AF_UNIX) return "a unix socket";
  if (domain != AF_INET && domain != AF_INET6)
    return fmt::format("a socket of address family {}", domain);
  sockaddr_storage local{}, peer{};
  socklen_t llen = sizeof(local), plen = sizeof(peer);
  bool bound = ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) == 0;
  bool connected = ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0;
  const char* proto = type == SOCK_STREAM ? "TCP" : type == SOCK_DGRAM ? "UDP" : "raw";
  if (connected)
    return fmt::format("a connected {} socket {} -> {}", proto, sockaddr_text(local),
                       sockaddr_text(peer));
  if (bound && reinterpret_cast<sockaddr_in&>(local).sin_port != 0)
    return fmt::format("a {} socket on {}", proto, sockaddr_text(local));
  return fmt::format("an unbound {} socket", proto);
}

Status describe_listener(pid_t pid, int fd, int sock, int domain, uint64_t inode, json& j) {
  bool v6 = domain == AF_INET6;
  CKPT_TRY_ASSIGN(auto line, find_tcp_line(pid, inode, v6));
  sockaddr_storage local{};
  socklen_t llen = sizeof(local);
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&local), &llen) < 0)
    return sys_error(fmt::format("getsockname of pid {} fd {}", pid, fd));
  std::string where = sockaddr_text(local);
  if (!line || line->state != kTcpListen)
    return errorf(
        "pid {}: fd {} is a TCP socket on {} that /proc/{}/net/{} does not show listening", pid, fd,
        where, pid, v6 ? "tcp6" : "tcp");
  if (line->rx_queue != 0)
    return errorf(
        "pid {}: fd {} is a TCP socket listening on {} with {} connection(s) waiting to be "
        "accepted, which ckpt cannot save yet",
        pid, fd, where, line->rx_queue);
  // For a listener TCP_INFO carries the backlog it was given (after the somaxconn cap).
  tcp_info info{};
  socklen_t ilen = sizeof(info);
  if (::getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &ilen) < 0)
    return sys_error(fmt::format("getsockopt TCP_INFO of pid {} fd {}", pid, fd));
  char host[INET6_ADDRSTRLEN];
  uint16_t port = 0;
  uint32_t scope = 0;
  if (v6) {
    auto& a = reinterpret_cast<const sockaddr_in6&>(local);
    ::inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof(host));
    port = ntohs(a.sin6_port);
    scope = a.sin6_scope_id;
  } else {
    auto& a = reinterpret_cast<const sockaddr_in&>(local);
    ::inet_ntop(AF_INET, &a.sin_addr, host, sizeof(host));
    port = ntohs(a.sin_port);
  }
  json opts = json::object();
  for (auto& o : kOptions) {
    if (o.v6_only && !v6) continue;
    int v = int_opt(sock, o.level, o.opt);
    if (v < 0) return sys_error(fmt::format("getsockopt {} of pid {} fd {}", o.name, pid, fd));
    opts[o.name] = v;
  }
  j["type"] = "tcp_listen";
  j["family"] = v6 ? "inet6" : "inet";
  j["addr"] = host;
  j["port"] = port;
  j["scope_id"] = scope;
  j["backlog"] = info.tcpi_sacked;
  j["options"] = std::move(opts);
  return {};
}

Status describe_socket(pid_t pid, int fd, std::string_view link, json& j) {
  // The socket itself, borrowed: its options and names are read without running the target.
  CKPT_TRY_ASSIGN(ScopedFd sock, files::borrow_fd(pid, fd));
  int domain = int_opt(sock.get(), SOL_SOCKET, SO_DOMAIN);
  int type = int_opt(sock.get(), SOL_SOCKET, SO_TYPE);
  int protocol = int_opt(sock.get(), SOL_SOCKET, SO_PROTOCOL);
  if (domain == AF_UNIX) return unix_sockets::describe(pid, fd, sock.get(), j);
  bool inet = domain == AF_INET || domain == AF_INET6;
  if (inet && type == SOCK_STREAM && protocol == IPPROTO_TCP &&
      int_opt(sock.get(), SOL_SOCKET, SO_ACCEPTCONN) == 1) {
    uint64_t inode = j["ino"];
    return describe_listener(pid, fd, sock.get(), domain, inode, j);
  }
  return errorf("pid {}: fd {} is {}, {}, which ckpt cannot save yet", pid, fd, link,
                what_socket(sock.get(), domain, type));
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

std::optional<Status> describe(pid_t pid, int fd, std::string_view link, json& j) {
  if (link.rfind("socket:", 0) != 0) return std::nullopt;
  return describe_socket(pid, fd, link, j);
}

namespace {

Result<sockaddr_storage> address_of(const json& j, socklen_t& len) {
  sockaddr_storage ss{};
  std::string host = j["addr"];
  uint16_t port = htons(j["port"].get<uint16_t>());
  if (j["family"] == "inet6") {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_port = port;
    a.sin6_scope_id = j.value("scope_id", 0u);
    len = sizeof(a);
    if (::inet_pton(AF_INET6, host.c_str(), &a.sin6_addr) == 1) return ss;
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    a.sin_port = port;
    len = sizeof(a);
    if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) == 1) return ss;
  }
  return errorf("fd {}: bad address {} in the image", j["fd"].get<int>(), host);
}

}  // namespace

Result<int> create(const json& j) {
  int want = j["fd"], flags = j["flags"];
  bool v6 = j["family"] == "inet6";
  socklen_t len = 0;
  CKPT_TRY_ASSIGN(sockaddr_storage addr, address_of(j, len));
  std::string where = sockaddr_text(addr);
  int fd = ::socket(v6 ? AF_INET6 : AF_INET,
                    SOCK_STREAM | SOCK_CLOEXEC | ((flags & O_NONBLOCK) ? SOCK_NONBLOCK : 0),
                    IPPROTO_TCP);
  if (fd < 0) return sys_error(fmt::format("socket for fd {} ({})", want, where));
  ScopedFd owner(fd);
  for (auto& o : kOptions) {
    if (!j["options"].contains(o.name)) continue;
    int v = j["options"][o.name];
    if (::setsockopt(fd, o.level, o.opt, &v, sizeof(v)) < 0)
      return sys_error(fmt::format("setsockopt {} for fd {} ({})", o.name, want, where));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0)
    return sys_error(fmt::format("fd {}: listen again on {}", want, where));
  if (::listen(fd, j["backlog"].get<int>()) < 0)
    return sys_error(fmt::format("fd {}: listen on {}", want, where));
  return owner.release();
}

}  // namespace ckpt::sockets
