#pragma once
// The record of one unix socket in the image (payload of kind "unix"), shared by its dump side
// (unix_socket.cpp) and its restore side (unix_restore.cpp).
#include <cstdint>
#include <vector>

#include "image/schema/codec.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {

constexpr int kUnixListen = 10;  // TCP_LISTEN, as sock_diag reports it

// What is known of the socket file a path name was bound to, at dump time.
enum class NameFile : int32_t {
  none = 0,     // unnamed, or an abstract name
  present = 1,  // the path still leads to the socket's own file: unlinked and bound again
  gone = 2,     // deleted or replaced since: bound, then unlinked (a replacement is left alone)
};

// A connection waiting in a listener's queue. The socket accept() will return has no inode yet
// and is in no fd table: it is made again by connecting. The connecting socket (its client) sees
// a peer of inode 0, as if closed.
struct QueuedConn {
  uint64_t peer = 0;  // the connecting socket; 0 once it was closed
  template <class V>
  void visit(V& v) {
    v("peer", peer);
  }
};

// The credentials a queued message carries (SCM_CREDENTIALS), as a receiver with SO_PASSCRED
// reads them.
struct SenderCreds {
  int32_t pid = 0;
  uint32_t uid = 0, gid = 0;
  bool operator==(const SenderCreds&) const = default;
  template <class V>
  void visit(V& v) {
    v("pid", pid), v("uid", uid), v("gid", gid);
  }
};

struct UnixEnd {
  uint64_t ino = 0, peer = 0;
  int32_t sock_type = 0, shutdown = 0;
  bool passcred = false;
  int32_t peek_off = -1, sndbuf = 0, rcvbuf = 0;
  std::vector<schema::Bytes> queue;  // a stream's bytes as one item; datagrams one item each
  // Since named sockets are saved (all optional: images of socket pairs lack them).
  int32_t state = 0;      // 1 connected, 7 unconnected, 10 listening
  bool has_peer = true;   // false: not connected; true with peer 0: the peer was closed
  schema::Bytes name;     // as bound (sun_path bytes, abstract names with their leading NUL)
  int32_t name_file = 0;  // NameFile
  uint32_t file_mode = 0, file_uid = 0, file_gid = 0;
  schema::Bytes peer_name;          // the peer's name (getpeername), for a peer outside the tree
  bool peer_outside = false;        // the peer is outside the dumped processes (--ext-unix-sk)
  int32_t backlog = 0;              // a listener's
  std::vector<QueuedConn> waiting;  // a listener's connections not yet accepted, in order
  std::vector<schema::Bytes> from;  // each datagram's sender name ("" unnamed), as `queue`
  // Each queue item's fds in flight (SCM_RIGHTS), as open file ids; empty when none is queued.
  std::vector<std::vector<uint32_t>> rights;
  // Each queue item's credentials, as `queue`, when the socket has SO_PASSCRED; else empty.
  std::vector<SenderCreds> creds;
  template <class V>
  void visit(V& v) {
    v("ino", ino), v("peer", peer), v("sock_type", sock_type), v("shutdown", shutdown);
    v("passcred", passcred), v("peek_off", peek_off), v("sndbuf", sndbuf), v("rcvbuf", rcvbuf);
    v("queue", queue);
    v.opt("state", state), v.opt("has_peer", has_peer), v.opt("name", name);
    v.opt("name_file", name_file), v.opt("file_mode", file_mode), v.opt("file_uid", file_uid);
    v.opt("file_gid", file_gid), v.opt("peer_name", peer_name);
    v.opt("peer_outside", peer_outside), v.opt("backlog", backlog), v.opt("waiting", waiting);
    v.opt("from", from), v.opt("rights", rights), v.opt("creds", creds);
  }
};

// "/run/x.sock" or "@abstract" (NULs shown as '@'), "unnamed" for an empty name.
std::string unix_name_text(const schema::Bytes& name);

// Restore side: every unix socket of the image, made again in the restorer.
Status recreate_unix_sockets(const RecreateEnv& env,
                             const std::vector<const schema::OpenFile*>& mine, OpenedFiles& out);

}  // namespace ckpt::fds
