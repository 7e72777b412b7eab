#include "resources/fds/inet_state.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace ckpt::fds::inet {

Endpoint endpoint_of(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET6) {
    auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    auto* b = reinterpret_cast<const uint8_t*>(&a.sin6_addr);
    e.v6 = true;
    e.addr.assign(b, b + sizeof(a.sin6_addr));
    e.port = ntohs(a.sin6_port);
    e.scope_id = a.sin6_scope_id;
  } else {
    auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    auto* b = reinterpret_cast<const uint8_t*>(&a.sin_addr);
    e.addr.assign(b, b + sizeof(a.sin_addr));
    e.port = ntohs(a.sin_port);
  }
  return e;
}

Result<sockaddr_storage> sockaddr_of(const Endpoint& e, socklen_t& len) {
  sockaddr_storage ss{};
  if (e.v6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    if (e.addr.size() != sizeof(a.sin6_addr)) return make_error("bad IPv6 address in the image");
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(e.port);
    a.sin6_scope_id = e.scope_id;
    std::memcpy(&a.sin6_addr, e.addr.data(), e.addr.size());
    len = sizeof(a);
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    if (e.addr.size() != sizeof(a.sin_addr)) return make_error("bad IPv4 address in the image");
    a.sin_family = AF_INET;
    a.sin_port = htons(e.port);
    std::memcpy(&a.sin_addr, e.addr.data(), e.addr.size());
    len = sizeof(a);
  }
  return ss;
}

std::string endpoint_text(const Endpoint& e) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (e.addr.size() == (e.v6 ? 16u : 4u))
    ::inet_ntop(e.v6 ? AF_INET6 : AF_INET, e.addr.data(), buf, sizeof(buf));
  return e.v6 ? fmt::format("[{}]:{}", buf, e.port) : fmt::format("{}:{}", buf, e.port);
}

Result<std::vector<IntOption>> read_options(int fd, std::span<const OptionSpec> specs, bool v6,
                                            std::string_view what) {
  std::vector<IntOption> out;
  for (auto& s : specs) {
    if (s.v6_only && !v6) continue;
    int v = 0;
    socklen_t len = sizeof(v);
    if (::getsockopt(fd, s.level, s.opt, &v, &len) < 0)
      return sys_error(fmt::format("getsockopt {} of {}", s.name, what));
    out.push_back({s.name, s.buffer ? v / 2 : v});
  }
  return out;
}

Status apply_options(int fd, std::span<const OptionSpec> specs, const std::vector<IntOption>& saved,
                     std::string_view what) {
  for (auto& s : specs)
    for (auto& o : saved) {
      if (o.name != s.name) continue;
      int v = o.value;
      int opt = s.opt;
      if (s.level == SOL_SOCKET && opt == SO_SNDBUF) opt = SO_SNDBUFFORCE;
      if (s.level == SOL_SOCKET && opt == SO_RCVBUF) opt = SO_RCVBUFFORCE;
      if (::setsockopt(fd, s.level, opt, &v, sizeof(v)) < 0)
        return sys_error(fmt::format("setsockopt {} {} for {}", s.name, v, what));
    }
  return {};
}

}  // namespace ckpt::fds::inet
