#pragma once
// What the kernel's sock_diag (UNIX_DIAG) says about a unix socket: its type, state, name, peer,
// shutdown state, queue lengths, the connections waiting in a listener's queue and the inode of
// the file it is bound to, by inode.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace ckpt::fds::unix_diag {

struct DiagInfo {
  int type = 0;   // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  int state = 0;  // TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
  uint64_t ino = 0;
  std::optional<uint64_t> peer;  // absent: no peer; 0: the peer was closed
  std::string name;              // "" unnamed; "@x" abstract (NULs shown as '@'); else a path
  int shutdown = 0;              // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
  std::string raw_name;          // the name as bound: bytes of sun_path, abstract with its NUL
  // UNIX_DIAG_RQLEN: a listener's waiting connections and backlog; otherwise the bytes queued to
  // be read and (for streams) those sent but not yet read by the peer.
  uint32_t rqueue = 0, wqueue = 0;
  std::vector<uint64_t> icons;  // a listener's waiting connections, in the order accept takes them
  std::optional<uint64_t> vfs_ino, vfs_dev;  // the socket file a path name was bound to
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
