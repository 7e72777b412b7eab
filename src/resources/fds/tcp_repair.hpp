#pragma once
#include "common/result.hpp"

// Established TCP connections are saved with their sockets in repair mode, which the kernel
// keeps until told otherwise: the dump decides at its end what becomes of them.
namespace ckpt::fds {

// Owned by the dump for its whole length. Its end (any error included) turns repair mode off
// and unlocks the network, so a process that goes on keeps working connections; after the tree
// is killed, keep_locked() instead lets the sockets be closed in repair mode (the kernel then
// sends nothing, no FIN, no reset) with the network lock left for the restore.
class TcpRepairScope {
 public:
  TcpRepairScope() = default;
  TcpRepairScope(const TcpRepairScope&) = delete;
  TcpRepairScope& operator=(const TcpRepairScope&) = delete;
  ~TcpRepairScope() { release(); }
  // Repair mode off, network unlocked. A dump reads each connection with repair mode on only for
  // that moment, so the processes may already run (a leave-running dump unlocks after letting
  // them go); on an error path it runs before the tree's end lets them go.
  void release();
  // The image is on disk and the tree about to be killed: repair mode goes back on (the dump
  // turns it off once it has read a connection), so that the sockets close without a packet.
  Status before_kill();
  void keep_locked();
  // Whether the dump holds any connection in repair mode.
  bool any() const;
};

}  // namespace ckpt::fds
