#pragma once
// Unix socket pairs (socketpair(): stream, datagram or seqpacket) whose two ends are both held by
// the dumped processes. Dump asks the kernel (sock_diag, UNIX_DIAG) for each socket's peer, name
// and shutdown state and copies what waits in its receive queue without taking it (MSG_PEEK
// stepped by SO_PEEK_OFF, datagrams one by one); restore makes one socketpair per pair in the
// restorer, writes each queue back through the other end and hands both ends to the puppets like
// the ends of a shared pipe. Named or listening sockets, a peer outside the dumped processes or
// already closed, file descriptors in flight and credentials attached to queued data are refused,
// naming the fd.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/scoped_fd.hpp"
#include "resources/context.hpp"

namespace ckpt::unix_sockets {

// What UNIX_DIAG says about one socket.
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

// Fills j (which has "fd", "flags", "ino") for an AF_UNIX socket borrowed as `sock`: type
// "unix", the peer's inode, the queued data. A socket that cannot be saved is an error naming it.
Status describe(pid_t pid, int fd, int sock, json& j);

// One fd entry of the image and the process holding it.
struct FdOf {
  pid_t pid;
  json* entry;
};

// At dump, once every process's fds are described: pairs up the unix sockets (both ends must be
// in the tree), marks each of their fd entries "shared" ("unix:INO:a" / ":b", INO the smaller
// inode of the pair) and adds one entry per pair to `shared`. `outside_holder` names a process
// outside the tree with an fd linking to its argument ("socket:[INO]"), 0 when none.
Status link(const std::vector<FdOf>& fds, json& shared,
            const std::function<pid_t(const std::string&)>& outside_holder);

// In the restorer: makes the pair `pair` describes, refilled, with its ends keyed
// "shared:unix:INO:a" and ":b".
Status open_pair(const json& pair, std::vector<std::pair<std::string, ScopedFd>>& out);

}  // namespace ckpt::unix_sockets
