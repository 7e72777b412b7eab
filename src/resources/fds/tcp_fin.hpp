#pragma once
// The FIN a half-closed connection had received, given again to its restored socket. TCP repair
// sets sequence numbers and queues but cannot say "the peer has closed its side": the restorer
// sends the socket the peer's FIN itself, through a raw socket, from the peer's address and port,
// at the next sequence number the socket expects and acknowledging nothing new. Marked
// (netlock::kPassMark), the packet passes the network lock that keeps the real peer away.
#include <cstdint>

#include "common/result.hpp"
#include "resources/fds/netlock.hpp"

namespace ckpt::fds::tcp_fin {

struct PeerFin {
  netlock::Connection conn;  // as the restored socket sees it: local is the socket's side
  uint32_t seq = 0;          // the socket's rcv_nxt
  uint32_t ack = 0;          // the socket's snd_una
  uint16_t window = 0;       // the peer's window, as it would write it (scaled down)
};

// Sends the segment; the caller waits for the socket's state to show it was taken.
Status send(const PeerFin& fin);

}  // namespace ckpt::fds::tcp_fin
