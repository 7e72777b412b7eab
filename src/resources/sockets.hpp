#pragma once
// Sockets: listening TCP sockets (IPv4 and IPv6) whose accept queue is empty are saved with their
// address, backlog and the options that change what the program sees; restore creates, binds and
// listens again inside the puppet. Unix sockets are unix_sockets.hpp's. Every other socket (UDP,
// connected or unbound TCP, a listener with connections waiting) makes the dump fail, naming it.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "resources/context.hpp"

namespace ckpt::sockets {

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

// Fills j (which has "fd", "flags") for a "socket:[INODE]" link; nullopt if the link is not a
// socket. A socket ckpt cannot save is an error naming it.
std::optional<Status> describe(pid_t pid, int fd, std::string_view link, json& j);

// Creates, binds and listens the socket described by j in the calling (puppet) process; returns
// the new fd.
Result<int> create(const json& j);

}  // namespace ckpt::sockets
