#pragma once
// What the inet socket kinds share: /proc/net/tcp lines and readable socket addresses.
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace ckpt::fds::inet {

// One line of /proc/PID/net/tcp or tcp6.
struct TcpLine {
  std::string local;  // "127.0.0.1:8080", "[::1]:8080"
  int state = 0;      // 0x0A is LISTEN
  uint64_t tx_queue = 0;
  uint64_t rx_queue = 0;  // for a listener: connections waiting to be accepted
  uint64_t inode = 0;
};

// Parses a line of /proc/net/tcp (v6 false) or tcp6 (v6 true); nullopt for the header or a
// malformed line.
std::optional<TcpLine> parse_tcp_line(std::string_view line, bool v6);
// The line of socket `inode` in /proc/PID/net/tcp{,6}, if any.
Result<std::optional<TcpLine>> find_tcp_line(pid_t pid, uint64_t inode, bool v6);

// "127.0.0.1:80", "[::1]:80", or the family's number for others.
std::string sockaddr_text(const sockaddr_storage& ss);
// "a UDP socket on 127.0.0.1:53", "a connected TCP socket 127.0.0.1:80 -> 10.0.0.2:4242", ...
std::string describe_socket(int fd, int domain, int type);

}  // namespace ckpt::fds::inet
