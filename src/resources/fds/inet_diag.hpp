#pragma once
// sock_diag (NETLINK_SOCK_DIAG, inet_diag) for what no socket option tells of an inet socket:
// its shutdown state, which a UDP socket keeps without any packet or state to show it.
#include <sys/types.h>

#include <cstdint>

#include "common/result.hpp"

namespace ckpt::fds::inet_diag {

// sk_shutdown (fd_access.hpp's kRcvShutdown | kSendShutdown) of the socket with inode `ino` (family
// AF_INET or AF_INET6, protocol IPPROTO_TCP or IPPROTO_UDP) bound to local port `port`: asked for
// the sockets on that port only. An error when sock_diag does not list it (an unbound socket is in
// no table).
Result<int> shutdown_of(int family, int protocol, uint16_t port, uint64_t ino);

}  // namespace ckpt::fds::inet_diag
