// The fd kinds ckpt knows, in the order they are asked to claim a descriptor: the first that
// claims it saves it. Special cases come before general ones (a deleted file before a regular
// file, a listening TCP socket before "any other socket"). Restore recreates the kinds in the
// same order (a kind may ask to come later: FdKind::recreate_rank): a listening socket must bind
// its port before the connections accepted from it, which share that port, are put back.
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {

const FdKind& pty_kind();
const FdKind& inherited_kind();
const FdKind& eventfd_kind();
const FdKind& signalfd_kind();
const FdKind& pidfd_kind();
const FdKind& timerfd_kind();
const FdKind& epoll_kind();
const FdKind& inotify_kind();
const FdKind& fanotify_kind();
const FdKind& tcp_listen_kind();
const FdKind& tcp_stream_kind();
const FdKind& udp_kind();
const FdKind& raw_socket_kind();
const FdKind& netlink_kind();
const FdKind& unix_socket_kind();
const FdKind& other_socket_kind();
const FdKind& pipe_kind();
const FdKind& memfd_kind();
const FdKind& mqueue_kind();
const FdKind& deleted_kind();
const FdKind& fifo_kind();
const FdKind& file_kind();
const FdKind& tty_kind();
const FdKind& chardev_kind();

const std::vector<const FdKind*>& all_kinds() {
  static const std::vector<const FdKind*> kinds = {
      &pty_kind(),           // pseudo-terminal pairs (not the caller's terminal with --shell-job)
      &inherited_kind(),     // --shell-job: the caller's streams and terminal
      &eventfd_kind(),       //
      &signalfd_kind(),      //
      &pidfd_kind(),         // opened once every process exists
      &timerfd_kind(),       //
      &epoll_kind(),         //
      &inotify_kind(),       // watches found again by path
      &fanotify_kind(),      //
      &tcp_listen_kind(),    // listening TCP sockets
      &tcp_stream_kind(),    // established TCP connections (repair mode)
      &udp_kind(),           //
      &raw_socket_kind(),    // raw IP sockets (ping)
      &netlink_kind(),       //
      &unix_socket_kind(),   // unix socket pairs
      &other_socket_kind(),  // every other socket: refused, naming it
      &pipe_kind(),          //
      &memfd_kind(),         // memfds: shared memory objects, as their mappings
      &mqueue_kind(),        // POSIX message queues (before deleted: an unlinked one)
      &deleted_kind(),       // files deleted while open
      &fifo_kind(),          //
      &file_kind(),          // regular files and directories
      &tty_kind(),           // terminals without --shell-job: refused
      &chardev_kind(),       // /dev/null and other character devices
  };
  return kinds;
}

}  // namespace ckpt::fds
