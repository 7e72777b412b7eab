#pragma once
// The network lock of dumped TCP connections. Between the dump and the restore no socket owns a
// saved connection, and the kernel would answer the peer's next segment with a reset. An
// nftables set in table `inet ckpt` lists each saved connection (peer address and port, local
// address and port); one rule in a hook at raw priority drops the packets the peer sends to it
// (after one letting through the restorer's own, marked kPassMark).
// The restore takes a connection out of the set once its socket exists again, and the peer's
// retransmissions go through.
#include <cstdint>
#include <string>

#include "common/result.hpp"
#include "image/schema/codec.hpp"

namespace ckpt::fds::netlock {

// Packets sent with this SO_MARK pass the lock: the restorer's own (tcp_fin.hpp).
constexpr uint32_t kPassMark = 0x636b7074;  // "ckpt"

struct Connection {
  bool v6 = false;
  schema::Bytes local;  // in_addr or in6_addr, network order
  uint16_t local_port = 0;
  schema::Bytes peer;
  uint16_t peer_port = 0;
};

// "127.0.0.1:80 -> 127.0.0.1:4242", for messages.
std::string text(const Connection& c);
// Loads what lock() uses (libnftables, ~3 ms), so that the first lock does not pay it in a
// frozen window.
void preload();
// Drops what the peer sends to the connection from now on. Creates table, sets and rule when
// missing; needs the `nft` command (Debian's nftables).
Status lock(const Connection& c);
// Lets the peer's packets through again; a connection that is not locked is not an error.
Status unlock(const Connection& c);

}  // namespace ckpt::fds::netlock
