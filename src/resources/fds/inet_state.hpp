#pragma once
// What the saved inet sockets (TCP connections, UDP) share: an address as the image keeps it, and
// integer socket options saved by name and set again.
#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "image/schema/codec.hpp"

namespace ckpt::fds::inet {

struct Endpoint {
  bool v6 = false;
  schema::Bytes addr;  // in_addr or in6_addr, network order
  uint16_t port = 0;
  uint32_t scope_id = 0;
  template <class V>
  void visit(V& v) {
    v("v6", v6), v("addr", addr), v("port", port), v("scope_id", scope_id);
  }
};

Endpoint endpoint_of(const sockaddr_storage& ss);
// The socket address of `e`; an address of the wrong size (a damaged image) is an error.
Result<sockaddr_storage> sockaddr_of(const Endpoint& e, socklen_t& len);
std::string endpoint_text(const Endpoint& e);

struct OptionSpec {
  const char* name;
  int level;
  int opt;
  bool v6_only = false;
  // SO_SNDBUF and SO_RCVBUF read back twice what was set (the kernel's bookkeeping share).
  bool buffer = false;
};

struct IntOption {
  std::string name;
  int32_t value = 0;
  template <class V>
  void visit(V& v) {
    v("name", name), v("value", value);
  }
};

Result<std::vector<IntOption>> read_options(int fd, std::span<const OptionSpec> specs, bool v6,
                                            std::string_view what);
// Sets every saved option `specs` knows; buffer sizes with the FORCE variants (the restorer has
// CAP_NET_ADMIN, and the original may have been above the sysctl limits by autotuning).
Status apply_options(int fd, std::span<const OptionSpec> specs, const std::vector<IntOption>& saved,
                     std::string_view what);

}  // namespace ckpt::fds::inet
