#pragma once
// What the kernel's sock_diag (UNIX_DIAG) says about a unix socket: its type, state, name, peer
// and shutdown state, by inode.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace ckpt::fds::unix_diag {

struct DiagInfo {
  int type = 0;   // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  int state = 0;  // TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
  uint64_t ino = 0;
  std::optional<uint64_t> peer;  // absent: no peer; 0: the peer was closed
  std::string name;              // "" unnamed; "@x" abstract (NULs shown as '@'); else a path
  int shutdown = 0;              // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
};

// Parses a reply to a SOCK_DIAG_BY_FAMILY request for one unix socket inode: netlink messages,
// each a unix_diag_msg followed by attributes. nullopt when it holds no answer for `ino`; an
// NLMSG_ERROR is an error.
Result<std::optional<DiagInfo>> parse_diag_reply(std::string_view reply, uint64_t ino);
// Asks the kernel about socket `ino` (the raw reply, for parse_diag_reply).
Result<std::string> query_diag(uint64_t ino);

// "stream", "datagram", "seqpacket".
const char* type_name(int type);
// A socket name as ss shows it: abstract names with '@' for each NUL.
std::string printable_name(std::string_view raw);

}  // namespace ckpt::fds::unix_diag
