// Established TCP connections (IPv4 and IPv6), saved through the kernel's TCP repair mode on the
// borrowed copy of the socket, so nothing runs in the target: sequence numbers, both queues (the
// send queue with its unacknowledged bytes), negotiated options (MSS, window scale, SACK,
// timestamps), the window, and the options a program sets. The network lock (netlock.hpp) keeps
// the peer's packets away from the time the socket is frozen until the restored one exists.
// The restorer builds a socket in repair mode at the same addresses, refills its queues and
// turns repair off: the kernel then probes the peer's window and retransmits what the peer has
// not acknowledged, so the peer sees a pause and no byte lost or repeated.
// Half-closed connections (a FIN sent, received, or both) are saved too: the restore queues our
// FIN as already sent (retransmitted until acknowledged) and hands the socket the peer's FIN
// (tcp_fin.hpp), in the order they came. A side shut down for reading only (SHUT_RD), which sends
// nothing, shows only in poll(): POLLRDHUP without a FIN received; it is shut down again.
//
// Registered after "tcp_listen" on purpose: kinds are recreated in the registry's order and a
// listener must bind its port before the connections it accepted share it.
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "common/fault_point.hpp"
#include "common/log.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inet.hpp"
#include "resources/fds/inet_state.hpp"
#include "resources/fds/netlock.hpp"
#include "resources/fds/tcp_fin.hpp"
#include "resources/fds/tcp_guard.hpp"
#include "resources/fds/tcp_repair.hpp"

namespace ckpt::fds {
namespace {

const inet::OptionSpec kOptions[] = {
    {"SO_SNDBUF", SOL_SOCKET, SO_SNDBUF, false, true},
    {"SO_RCVBUF", SOL_SOCKET, SO_RCVBUF, false, true},
    {"SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE},
    {"SO_OOBINLINE", SOL_SOCKET, SO_OOBINLINE},
    {"SO_PRIORITY", SOL_SOCKET, SO_PRIORITY},
    {"TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY},
    {"TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE},
    {"TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL},
    {"TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT},
    {"TCP_USER_TIMEOUT", IPPROTO_TCP, TCP_USER_TIMEOUT},
};

struct TcpStreamPayload {
  inet::Endpoint local, peer;
  uint32_t snd_seq = 0;      // after the last byte queued to send (write_seq)
  uint32_t rcv_seq = 0;      // after the last byte received (rcv_nxt)
  schema::Bytes send_queue;  // from the first unacknowledged byte; the last `unsent` never sent
  uint32_t unsent = 0;
  schema::Bytes recv_queue;  // received, not yet read by the program
  uint32_t mss = 0;
  bool sack = false, timestamps = false, wscale = false;
  uint32_t snd_wscale = 0, rcv_wscale = 0;
  uint32_t timestamp = 0;  // the connection's TCP timestamp clock
  uint32_t snd_wl1 = 0, snd_wnd = 0, max_window = 0, rcv_wnd = 0, rcv_wup = 0;
  std::vector<inet::IntOption> options;
  // TCP_ESTABLISHED, or a half-closed state: then a FIN counts in snd_seq (sent) or rcv_seq
  // (received), but is in neither queue's bytes.
  int32_t state = TCP_ESTABLISHED;
  // Saved with --tcp-close: addresses and options only, to come back closed.
  std::optional<bool> closed;
  // Shut down for reading by the program (SHUT_RD), not by a FIN: recv() returns 0.
  std::optional<bool> read_shut;
  template <class V>
  void visit(V& v) {
    v("local", local), v("peer", peer), v("snd_seq", snd_seq), v("rcv_seq", rcv_seq);
    v("send_queue", send_queue), v("unsent", unsent), v("recv_queue", recv_queue);
    v("mss", mss), v("sack", sack), v("timestamps", timestamps), v("wscale", wscale);
    v("snd_wscale", snd_wscale), v("rcv_wscale", rcv_wscale), v("timestamp", timestamp);
    v("snd_wl1", snd_wl1), v("snd_wnd", snd_wnd), v("max_window", max_window);
    v("rcv_wnd", rcv_wnd), v("rcv_wup", rcv_wup), v("options", options);
    v.opt("state", state);
    v("closed", closed), v("read_shut", read_shut);
  }
};

// The states of a connection with a socket that ckpt saves, and what each FIN did. A FIN that
// came or went in the state before is part of the state after: LAST_ACK received first,
// CLOSING sent first.
bool saveable(int state) {
  return state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
         state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING;
}
bool fin_sent(int state) {
  return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK ||
         state == TCP_CLOSING;
}
bool fin_received(int state) {
  return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING;
}
// Our FIN still counts in the send queue's size until the peer acknowledges it.
bool fin_unacked(int state) {
  return fin_sent(state) && state != TCP_FIN_WAIT2;
}
uint32_t snd_data_end(const TcpStreamPayload& t) {
  return t.snd_seq - (fin_sent(t.state) ? 1 : 0);
}
uint32_t rcv_data_end(const TcpStreamPayload& t) {
  return t.rcv_seq - (fin_received(t.state) ? 1 : 0);
}

// Sockets the current dump put in repair mode (dup'ed: they outlive the probe).
struct Repaired {
  ScopedFd sock;
  netlock::Connection conn;
};
std::vector<Repaired>& repaired() {
  static std::vector<Repaired> list;
  return list;
}

// Connections saved to come back closed (--tcp-close), dup'ed: a tree that is killed resets them
// (SO_LINGER 0), so that they neither linger on their ports, which the restored listener needs
// (FIN_WAIT, TIME_WAIT), nor leave their peers waiting. `before` is put back on a survivor.
struct ToReset {
  ScopedFd sock;
  linger before{};
  bool set = false;
};
std::vector<ToReset>& to_reset() {
  static std::vector<ToReset> list;
  return list;
}

// Undoes repair mode and the lock should the dumper die before it does (tcp_guard.hpp).
TcpGuard& guard() {
  static TcpGuard g;
  return g;
}

netlock::Connection connection_of(const TcpStreamPayload& t) {
  return {t.local.v6, t.local.addr, t.local.port, t.peer.addr, t.peer.port};
}

const char* state_name(int state) {
  static const char* const names[] = {"?",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                      "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                      "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
  return state >= 0 && state < 12 ? names[state] : "?";
}

Result<tcp_info> info_of(int sock, std::string_view what) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
    return sys_error(fmt::format("getsockopt TCP_INFO of {}", what));
  return info;
}

Status set_int(int sock, int opt, int value, std::string_view name, std::string_view what) {
  if (::setsockopt(sock, IPPROTO_TCP, opt, &value, sizeof(value)) < 0)
    return sys_error(fmt::format("setsockopt {} {} on {}", name, value, what));
  return {};
}

Result<uint32_t> get_u32(int sock, int opt, std::string_view name, std::string_view what) {
  uint32_t v = 0;
  socklen_t len = sizeof(v);
  if (::getsockopt(sock, IPPROTO_TCP, opt, &v, &len) < 0)
    return sys_error(fmt::format("getsockopt {} of {}", name, what));
  return v;
}

// One queue of a socket in repair mode: its sequence number and its bytes, peeked. `fin` is 1
// when the queue's size counts a FIN, which has no byte to peek.
Status read_queue(int sock, int queue, int size_ioctl, int fin, uint32_t& seq, schema::Bytes& data,
                  std::string_view what) {
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE", what));
  CKPT_TRY_ASSIGN(seq, get_u32(sock, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ", what));
  int size = 0;
  if (::ioctl(sock, size_ioctl, &size) < 0) return sys_error(fmt::format("queue size of {}", what));
  size = std::max(size - fin, 0);
  data.resize(static_cast<size_t>(size));
  if (size == 0) return {};
  ssize_t n = ::recv(sock, data.data(), data.size(), MSG_PEEK | MSG_DONTWAIT);
  if (n != size)
    return n < 0 ? sys_error(fmt::format("peek the queue of {}", what))
                 : errorf("{}: peeked {} of the {} bytes queued", what, n, size);
  return {};
}

Status read_repaired(int sock, const tcp_info& info, TcpStreamPayload& t, std::string_view what) {
  t.state = info.tcpi_state;
  CKPT_TRY(read_queue(sock, TCP_SEND_QUEUE, SIOCOUTQ, fin_unacked(t.state) ? 1 : 0, t.snd_seq,
                      t.send_queue, what));
  int unsent = 0;
  if (::ioctl(sock, SIOCOUTQNSD, &unsent) < 0)
    return sys_error(fmt::format("SIOCOUTQNSD of {}", what));
  t.unsent = std::min(static_cast<uint32_t>(unsent), static_cast<uint32_t>(t.send_queue.size()));
  // SIOCINQ leaves a received FIN out by itself.
  CKPT_TRY(read_queue(sock, TCP_RECV_QUEUE, SIOCINQ, 0, t.rcv_seq, t.recv_queue, what));
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what));
  CKPT_TRY_ASSIGN(t.mss, get_u32(sock, TCP_MAXSEG, "TCP_MAXSEG", what));
  CKPT_TRY_ASSIGN(t.timestamp, get_u32(sock, TCP_TIMESTAMP, "TCP_TIMESTAMP", what));
  tcp_repair_window w{};
  socklen_t wlen = sizeof(w);
  if (::getsockopt(sock, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &wlen) < 0)
    return sys_error(fmt::format("getsockopt TCP_REPAIR_WINDOW of {}", what));
  t.snd_wl1 = w.snd_wl1, t.snd_wnd = w.snd_wnd, t.max_window = w.max_window;
  t.rcv_wnd = w.rcv_wnd, t.rcv_wup = w.rcv_wup;
  t.sack = info.tcpi_options & TCPI_OPT_SACK;
  t.timestamps = info.tcpi_options & TCPI_OPT_TIMESTAMPS;
  t.wscale = info.tcpi_options & TCPI_OPT_WSCALE;
  t.snd_wscale = info.tcpi_snd_wscale, t.rcv_wscale = info.tcpi_rcv_wscale;
  CKPT_TRY_ASSIGN(t.options, inet::read_options(sock, kOptions, t.local.v6, what));
  // The kernel keeps SHUT_RD in sk_shutdown alone, which poll() shows as POLLRDHUP; so does a
  // FIN received, which the state tells.
  pollfd pfd{sock, POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) < 0) return sys_error(fmt::format("poll of {}", what));
  if ((pfd.revents & POLLRDHUP) && !fin_received(t.state)) t.read_shut = true;
  return {};
}

Result<TcpStreamPayload> endpoints(FdProbe& p, int sock) {
  sockaddr_storage local{}, peer{};
  socklen_t llen = sizeof(local), plen = sizeof(peer);
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&local), &llen) < 0 ||
      ::getpeername(sock, reinterpret_cast<sockaddr*>(&peer), &plen) < 0)
    return sys_error(fmt::format("addresses of pid {} fd {}", p.pid, p.fd));
  TcpStreamPayload t;
  t.local = inet::endpoint_of(local);
  t.peer = inet::endpoint_of(peer);
  return t;
}

// With --tcp-close: what a closed socket needs (its addresses and options), read without repair
// mode or the network lock, so that the connection goes on untouched.
Status dump_closed(FdProbe& p, int sock, schema::OpenFile& of) {
  std::string what = fmt::format("pid {} fd {}", p.pid, p.fd);
  CKPT_TRY_ASSIGN(tcp_info info, info_of(sock, what));
  CKPT_TRY_ASSIGN(TcpStreamPayload t, endpoints(p, sock));
  t.state = info.tcpi_state;
  t.closed = true;
  CKPT_TRY_ASSIGN(t.options, inet::read_options(sock, kOptions, t.local.v6, what));
  ToReset r{ScopedFd(::fcntl(sock, F_DUPFD_CLOEXEC, 3))};
  socklen_t len = sizeof(r.before);
  if (!r.sock || ::getsockopt(sock, SOL_SOCKET, SO_LINGER, &r.before, &len) < 0)
    return sys_error(fmt::format("dup and SO_LINGER of {}", what));
  to_reset().push_back(std::move(r));
  log::info("dump", "pid {}: fd {} TCP {} {}: saved to come back closed (--tcp-close)", p.pid, p.fd,
            netlock::text(connection_of(t)), state_name(t.state));
  of.payload = schema::encode(t);
  return {};
}

Status dump_connection(DumpEnv& env, FdProbe& p, schema::OpenFile& of) {
  CKPT_TRY_ASSIGN(int sock, p.borrowed());
  std::string what = fmt::format("pid {} fd {}", p.pid, p.fd);
  std::string desc = inet::describe_socket(sock, p.domain, p.type);
  if (env.flags.tcp_close) return dump_closed(p, sock, of);
  if (!env.flags.tcp_established)
    return errorf(
        "pid {}: fd {} is {}, {}; dump with --tcp-established to save it, or with --tcp-close "
        "to have it come back closed",
        p.pid, p.fd, p.link, desc);
  CKPT_TRY_ASSIGN(tcp_info before, info_of(sock, what));
  if (!saveable(before.tcpi_state))
    return errorf("pid {}: fd {} is {} in state {}, which ckpt cannot save yet", p.pid, p.fd, desc,
                  state_name(before.tcpi_state));
  CKPT_TRY_ASSIGN(TcpStreamPayload t, endpoints(p, sock));
  ScopedFd own(::fcntl(sock, F_DUPFD_CLOEXEC, 3));
  if (!own) return sys_error(fmt::format("dup of {}", what));
  // The guard first, then the lock, then repair mode: whatever fails next, or if the dumper
  // dies, the dump's end or the guard undoes both.
  CKPT_TRY(guard().watch(own.get(), connection_of(t)));
  CKPT_TRY(netlock::lock(connection_of(t)));
  repaired().push_back({std::move(own), connection_of(t)});
  CKPT_TRY(set_int(sock, TCP_REPAIR, TCP_REPAIR_ON, "TCP_REPAIR", what));
  // The state read now is the one saved: the peer may have closed its side since the first look.
  CKPT_TRY_ASSIGN(tcp_info info, info_of(sock, what));
  if (!saveable(info.tcpi_state))
    return errorf("pid {}: fd {} is {} in state {}, which ckpt cannot save yet", p.pid, p.fd, desc,
                  state_name(info.tcpi_state));
  CKPT_TRY(read_repaired(sock, info, t, what));
  // Off again at once: the lock keeps the peer's packets away and the process is stopped, so
  // nothing changes, and a program let go by a dying dumper never meets a socket in repair mode
  // (its calls would fail with EPERM). A tree to be killed gets it back just before
  // (before_kill), so that its sockets close without a packet.
  CKPT_TRY(set_int(sock, TCP_REPAIR, TCP_REPAIR_OFF, "TCP_REPAIR", what));
  fault::point("tcp", "read and locked");
  log::info("dump", "pid {}: fd {} TCP {} {}: {} bytes to send ({} unsent), {} received", p.pid,
            p.fd, netlock::text(connection_of(t)), state_name(t.state), t.send_queue.size(),
            t.unsent, t.recv_queue.size());
  of.payload = schema::encode(t);
  return {};
}

Status fill_queue(int sock, int queue, std::span<const uint8_t> data, std::string_view what) {
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE", what));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(sock, data.data() + off, data.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return sys_error(fmt::format("refill the {} queue of {} ({} of {} bytes)",
                                   queue == TCP_SEND_QUEUE ? "send" : "receive", what, off,
                                   data.size()));
    off += static_cast<size_t>(n);
  }
  return {};
}

Status negotiated_options(int sock, const TcpStreamPayload& t, std::string_view what) {
  std::vector<tcp_repair_opt> opts;
  opts.push_back({TCPOPT_MAXSEG, t.mss});
  if (t.wscale) opts.push_back({TCPOPT_WINDOW, t.snd_wscale | (t.rcv_wscale << 16)});
  if (t.sack) opts.push_back({TCPOPT_SACK_PERMITTED, 0});
  if (t.timestamps) opts.push_back({TCPOPT_TIMESTAMP, 0});
  if (::setsockopt(sock, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts.data(),
                   static_cast<socklen_t>(opts.size() * sizeof(opts[0]))) < 0)
    return sys_error(fmt::format("setsockopt TCP_REPAIR_OPTIONS on {}", what));
  return {};
}

// A new socket of the connection's family, in repair mode.
Result<ScopedFd> repair_socket(const TcpStreamPayload& t, const std::string& what) {
  ScopedFd fd(::socket(t.local.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return sys_error(fmt::format("socket for {}", what));
  CKPT_TRY(set_int(fd.get(), TCP_REPAIR, TCP_REPAIR_ON, "TCP_REPAIR", what));
  return fd;
}

// In repair mode: the saved addresses, without a packet (SK_FORCE_REUSE lets the port be shared
// with the listener that accepted the connection).
Status bind_and_connect(int sock, const TcpStreamPayload& t, const std::string& what) {
  socklen_t llen = 0, plen = 0;
  CKPT_TRY_ASSIGN(sockaddr_storage local, inet::sockaddr_of(t.local, llen));
  CKPT_TRY_ASSIGN(sockaddr_storage peer, inet::sockaddr_of(t.peer, plen));
  if (::bind(sock, reinterpret_cast<sockaddr*>(&local), llen) < 0)
    return sys_error(fmt::format("{}: bind to {}", what, inet::endpoint_text(t.local)));
  if (::connect(sock, reinterpret_cast<sockaddr*>(&peer), plen) < 0)
    return sys_error(fmt::format("{}: connect in repair mode", what));
  return {};
}

// Sequence numbers and the timestamp clock go in while the socket is still closed; connect in
// repair mode then makes it established without a packet.
Status connect_repaired(int sock, const TcpStreamPayload& t, const std::string& what) {
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE", what));
  CKPT_TRY(set_int(sock, TCP_QUEUE_SEQ, static_cast<int>(snd_data_end(t) - t.send_queue.size()),
                   "TCP_QUEUE_SEQ", what));
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE", what));
  CKPT_TRY(set_int(sock, TCP_QUEUE_SEQ, static_cast<int>(rcv_data_end(t) - t.recv_queue.size()),
                   "TCP_QUEUE_SEQ", what));
  if (t.timestamps)
    CKPT_TRY(set_int(sock, TCP_TIMESTAMP, static_cast<int>(t.timestamp), "TCP_TIMESTAMP", what));
  // The segment size is worked out from the path at connect, bounded by the MSS agreed on, which
  // TCP_REPAIR_OPTIONS can give only after connect: without a bound in place beforehand the socket
  // keeps the 536-byte default (524 with timestamps) for good. TCP_MAXSEG takes at most 32767,
  // which only loopback's 64 KiB MTU exceeds.
  if (t.mss >= 536) {
    int bound = static_cast<int>(std::min<uint32_t>(t.mss, 32767));
    CKPT_TRY(set_int(sock, TCP_MAXSEG, bound, "TCP_MAXSEG", what));
  }
  return bind_and_connect(sock, t, what);
}

// The window as saved, except that a received FIN is not there yet: the window's left edge may
// not lie past what the socket has received.
Status set_window(int sock, const TcpStreamPayload& t, std::string_view what) {
  tcp_repair_window w{t.snd_wl1, t.snd_wnd, t.max_window, t.rcv_wnd, t.rcv_wup};
  uint32_t rcv_end = rcv_data_end(t);
  if (static_cast<int32_t>(w.rcv_wup - rcv_end) > 0) {
    w.rcv_wnd += w.rcv_wup - rcv_end;
    w.rcv_wup = rcv_end;
  }
  if (::setsockopt(sock, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) < 0)
    return sys_error(fmt::format("setsockopt TCP_REPAIR_WINDOW on {}", what));
  return {};
}

// Bytes the connection had queued but never sent: written in repair mode they would count as
// sent, beyond a window the peer may have closed, and come back only by retransmission timeouts
// that back off to seconds. So they are queued as a program's send() would, after repair mode.
// The send buffer, restored to the size that held them, is raised while they go in, since the
// repaired part may take more of it than it did in the original.
Status queue_unsent(int sock, std::span<const uint8_t> data, std::string_view what) {
  if (data.empty()) return {};
  int size = int_sockopt(sock, SOL_SOCKET, SO_SNDBUF);
  if (size < 0) return sys_error(fmt::format("getsockopt SO_SNDBUF of {}", what));
  // The kernel doubles what is set and reports the doubled value.
  int raised = size / 2 + static_cast<int>(std::min<size_t>(data.size(), 64u << 20)) * 2;
  if (::setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &raised, sizeof(raised)) < 0)
    return sys_error(fmt::format("setsockopt SO_SNDBUFFORCE of {}", what));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(sock, data.data() + off, data.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return sys_error(
          fmt::format("queue the {} unsent bytes of {} ({} queued)", data.size(), what, off));
    off += static_cast<size_t>(n);
  }
  int restored = size / 2;
  if (::setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &restored, sizeof(restored)) < 0)
    return sys_error(fmt::format("setsockopt SO_SNDBUFFORCE of {}", what));
  return {};
}

// Our FIN, as a segment already sent (repair mode, send queue): it is retransmitted until the
// peer acknowledges it, again if it had.
Status queue_our_fin(int sock, std::string_view what) {
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE", what));
  if (::shutdown(sock, SHUT_WR) < 0) return sys_error(fmt::format("shutdown(SHUT_WR) of {}", what));
  return set_int(sock, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what);
}

// The peer's FIN, sent to the socket (tcp_fin.hpp); the kernel takes it in softirq, so the state
// is watched for it.
Status take_peer_fin(int sock, const TcpStreamPayload& t, int expect, std::string_view what) {
  tcp_fin::PeerFin fin;
  fin.conn = connection_of(t);
  fin.seq = rcv_data_end(t);
  fin.ack = snd_data_end(t) - static_cast<uint32_t>(t.send_queue.size());
  fin.window = static_cast<uint16_t>(std::min<uint32_t>(t.snd_wnd >> t.snd_wscale, 0xffff));
  CKPT_TRY(tcp_fin::send(fin));
  int state = 0;
  for (int i = 0; i < 2000; ++i) {
    CKPT_TRY_ASSIGN(tcp_info info, info_of(sock, what));
    state = info.tcpi_state;
    if (state == expect) return {};
    ::usleep(1000);
  }
  return errorf("{}: the peer's FIN was not taken (state {}, not {})", what, state_name(state),
                state_name(expect));
}

// A half-closed connection goes through its FINs in the order they came: sent first in
// FIN_WAIT1, FIN_WAIT2 and CLOSING, received first in CLOSE_WAIT and LAST_ACK.
Status replay_fins(int sock, const TcpStreamPayload& t, std::string_view what) {
  switch (t.state) {
    case TCP_ESTABLISHED:
      return {};
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
      return queue_our_fin(sock, what);
    case TCP_CLOSING:
      CKPT_TRY(queue_our_fin(sock, what));
      return take_peer_fin(sock, t, TCP_CLOSING, what);
    case TCP_CLOSE_WAIT:
      return take_peer_fin(sock, t, TCP_CLOSE_WAIT, what);
    case TCP_LAST_ACK:
      CKPT_TRY(take_peer_fin(sock, t, TCP_CLOSE_WAIT, what));
      return queue_our_fin(sock, what);
    default:
      return errorf("{}: saved in state {}, which ckpt cannot restore", what, state_name(t.state));
  }
}

Result<ScopedFd> create(const RecreateEnv& env, const schema::OpenFile& of,
                        const TcpStreamPayload& t) {
  std::string what = fmt::format("{}: TCP {}", env.holder(of.id), netlock::text(connection_of(t)));
  CKPT_TRY_ASSIGN(ScopedFd fd, repair_socket(t, what));
  int sock = fd.get();
  CKPT_TRY(connect_repaired(sock, t, what));
  CKPT_TRY(negotiated_options(sock, t, what));
  CKPT_TRY(inet::apply_options(sock, kOptions, t.options, what));
  CKPT_TRY(fill_queue(sock, TCP_RECV_QUEUE, t.recv_queue, what));
  // After our FIN nothing can be sent: the unsent bytes go in before it, as sent.
  bool can_send = t.state == TCP_ESTABLISHED || t.state == TCP_CLOSE_WAIT;
  std::span<const uint8_t> queue(t.send_queue);
  size_t sent = can_send ? queue.size() - std::min<size_t>(t.unsent, queue.size()) : queue.size();
  CKPT_TRY(fill_queue(sock, TCP_SEND_QUEUE, queue.first(sent), what));
  CKPT_TRY(set_window(sock, t, what));
  CKPT_TRY(set_int(sock, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what));
  CKPT_TRY(replay_fins(sock, t, what));
  // Leaving repair mode sends a window probe; the peer's answer restarts the exchange.
  CKPT_TRY(set_int(sock, TCP_REPAIR, TCP_REPAIR_OFF, "TCP_REPAIR", what));
  CKPT_TRY(netlock::unlock(connection_of(t)));
  CKPT_TRY(queue_unsent(sock, queue.subspan(sent), what));
  // Sends nothing, and what the receive queue holds can still be read, as before the dump.
  if (t.read_shut.value_or(false) && ::shutdown(sock, SHUT_RD) < 0)
    return sys_error(fmt::format("{}: shutdown(SHUT_RD)", what));
  CKPT_TRY(set_status_flags(sock, of.flags, what));
  return fd;
}

// A connection that comes back closed, as one its peer has reset: the socket is connected in
// repair mode (no packet) so that it keeps its local address, then disconnected there, which
// leaves it in CLOSE with ECONNABORTED pending, again without a packet. The program's next call
// on it fails as on any connection lost, and poll() reports it (POLLHUP, POLLERR).
Result<ScopedFd> create_closed(const RecreateEnv& env, const schema::OpenFile& of,
                               const TcpStreamPayload& t) {
  std::string what = fmt::format("{}: TCP {}", env.holder(of.id), netlock::text(connection_of(t)));
  CKPT_TRY_ASSIGN(ScopedFd fd, repair_socket(t, what));
  int sock = fd.get();
  CKPT_TRY(bind_and_connect(sock, t, what));
  sockaddr none{};
  none.sa_family = AF_UNSPEC;
  if (::connect(sock, &none, sizeof(none)) < 0)
    return sys_error(fmt::format("{}: disconnect in repair mode", what));
  CKPT_TRY(set_int(sock, TCP_REPAIR, TCP_REPAIR_OFF, "TCP_REPAIR", what));
  CKPT_TRY(inet::apply_options(sock, kOptions, t.options, what));
  // Dumped with --tcp-established, the connection is still locked: the peer's next packet now
  // meets no connection and is answered with a reset, so the peer learns it is gone.
  if (!t.closed) CKPT_TRY(netlock::unlock(connection_of(t)));
  CKPT_TRY(set_status_flags(sock, of.flags, what));
  log::info("restore", "{}: restored closed", what);
  return fd;
}

class TcpStreamKind final : public FdKind {
 public:
  std::string_view name() const override { return "tcp_stream"; }
  // Every TCP socket past the handshake and not listening: ESTABLISHED and the half-closed states
  // are saved, the others (SYN_SENT, ...) refused by dump() naming them.
  bool claims(FdProbe& p, const DumpFlags&) const override {
    if ((p.domain != AF_INET && p.domain != AF_INET6) || p.type != SOCK_STREAM ||
        p.protocol != IPPROTO_TCP)
      return false;
    auto sock = p.borrowed();
    if (!sock.ok()) return false;
    auto info = info_of(*sock, "");
    return info.ok() && info->tcpi_state != TCP_CLOSE && info->tcpi_state != TCP_LISTEN;
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    return dump_connection(env, p, of);
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(TcpStreamPayload t, payload_of<TcpStreamPayload>(*of));
      if (t.closed.value_or(false) || env.tcp_close) {
        CKPT_TRY_ASSIGN(out[of->id], create_closed(env, *of, t));
      } else {
        CKPT_TRY_ASSIGN(out[of->id], create(env, *of, t));
      }
    }
    return {};
  }
};

}  // namespace

void TcpRepairScope::release() {
  for (auto& r : repaired()) {
    int off = TCP_REPAIR_OFF;
    if (::setsockopt(r.sock.get(), IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) < 0)
      log::warn("dump", "TCP {}: repair mode off: {}", netlock::text(r.conn), strerror(errno));
    if (Status st = netlock::unlock(r.conn); !st.ok()) log::warn("dump", "{}", st.error().message);
  }
  repaired().clear();
  for (auto& r : to_reset())
    if (r.set) (void)::setsockopt(r.sock.get(), SOL_SOCKET, SO_LINGER, &r.before, sizeof(r.before));
  to_reset().clear();
  guard().stand_down();
}

Status TcpRepairScope::before_kill() {
  for (auto& r : to_reset()) {
    linger reset{1, 0};
    if (::setsockopt(r.sock.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) < 0)
      return sys_error("SO_LINGER 0 on a TCP connection before the kill");
    r.set = true;
  }
  for (auto& r : repaired()) {
    int on = TCP_REPAIR_ON;
    if (::setsockopt(r.sock.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
      return sys_error(
          fmt::format("TCP {}: repair mode on before the kill", netlock::text(r.conn)));
  }
  fault::point("tcp", "repair mode on before the kill");
  return {};
}

bool TcpRepairScope::any() const {
  return !repaired().empty();
}

void TcpRepairScope::keep_locked() {
  // Closed in repair mode, a socket goes away without a packet; one to reset sends its reset.
  repaired().clear();
  to_reset().clear();
  guard().stand_down();
}

const FdKind& tcp_stream_kind() {
  static const TcpStreamKind kind;
  return kind;
}

}  // namespace ckpt::fds
