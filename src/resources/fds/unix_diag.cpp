#include "resources/fds/unix_diag.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/scoped_fd.hpp"
#include "resources/fds/netlink_reply.hpp"

namespace ckpt::fds::unix_diag {

const char* type_name(int type) {
  switch (type) {
    case SOCK_STREAM:
      return "stream";
    case SOCK_DGRAM:
      return "datagram";
    case SOCK_SEQPACKET:
      return "seqpacket";
    default:
      return "unknown-type";
  }
}

// Abstract names start with a NUL; like ss, show each NUL as '@'.
std::string printable_name(std::string_view raw) {
  std::string s(raw);
  if (!s.empty() && s[0] != '\0') s = s.c_str();  // a path: up to its terminating NUL
  for (char& c : s)
    if (c == '\0') c = '@';
  return s;
}

namespace {

// Copies the reply into aligned memory: the netlink macros read headers in place.
// A reply is one netlink message of a few hundred bytes; more than a megabyte is not looked at.
std::vector<uint64_t> aligned_copy(std::string_view bytes) {
  size_t n = std::min(bytes.size(), size_t{1} << 20);
  std::vector<uint64_t> buf((n + 7) / 8);
  if (n > 0) std::memcpy(buf.data(), bytes.data(), n);
  return buf;
}

DiagInfo parse_attributes(const unix_diag_msg* msg, size_t payload_len) {
  DiagInfo info;
  info.type = msg->udiag_type;
  info.state = msg->udiag_state;
  info.ino = msg->udiag_ino;
  size_t head = NLMSG_ALIGN(sizeof(unix_diag_msg));
  if (payload_len < head) return info;
  auto* attr = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(msg) + head);
  int left = static_cast<int>(payload_len - head);
  for (; RTA_OK(attr, left); attr = RTA_NEXT(attr, left)) {
    const char* data = static_cast<const char*>(RTA_DATA(attr));
    size_t len = RTA_PAYLOAD(attr);
    switch (attr->rta_type) {
      case UNIX_DIAG_NAME:
        info.raw_name.assign(data, len);
        info.name = printable_name(info.raw_name);
        break;
      case UNIX_DIAG_RQLEN:
        if (len >= sizeof(unix_diag_rqlen)) {
          unix_diag_rqlen q;
          std::memcpy(&q, data, sizeof(q));
          info.rqueue = q.udiag_rqueue, info.wqueue = q.udiag_wqueue;
        }
        break;
      case UNIX_DIAG_ICONS:
        for (size_t at = 0; at + sizeof(uint32_t) <= len; at += sizeof(uint32_t)) {
          uint32_t icon;
          std::memcpy(&icon, data + at, sizeof(icon));
          info.icons.push_back(icon);
        }
        break;
      case UNIX_DIAG_VFS:
        if (len >= sizeof(unix_diag_vfs)) {
          unix_diag_vfs vfs;
          std::memcpy(&vfs, data, sizeof(vfs));
          info.vfs_ino = vfs.udiag_vfs_ino, info.vfs_dev = vfs.udiag_vfs_dev;
        }
        break;
      case UNIX_DIAG_PEER:
        if (len >= sizeof(uint32_t)) {
          uint32_t peer;
          std::memcpy(&peer, data, sizeof(peer));
          info.peer = peer;
        }
        break;
      case UNIX_DIAG_SHUTDOWN:
        if (len >= 1) info.shutdown = static_cast<uint8_t>(data[0]);
        break;
      default:
        break;
    }
  }
  return info;
}

}  // namespace

namespace {

constexpr uint32_t kShowAll =
    UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_ICONS | UDIAG_SHOW_VFS;

Status send_request(int nl, uint64_t ino, uint32_t show) {
  struct {
    nlmsghdr head;
    unix_diag_req req;
  } msg{};
  msg.head.nlmsg_len = sizeof(msg);
  msg.head.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.head.nlmsg_flags = NLM_F_REQUEST;
  msg.head.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0U;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show = show;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0U;  // any socket with this inode
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
    return sys_error("sock_diag request");
  return {};
}

}  // namespace

Result<std::string> query_diag(uint64_t ino) {
  ScopedFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return sys_error("socket NETLINK_SOCK_DIAG");
  if (auto sent = send_request(nl.get(), ino, kShowAll); !sent.ok())
    return sent.error().wrap(fmt::format("socket:[{}]", ino));
  std::string reply(16384, '\0');
  ssize_t n = ::recv(nl.get(), reply.data(), reply.size(), 0);
  if (n < 0) return sys_error(fmt::format("sock_diag reply for socket:[{}]", ino));
  reply.resize(static_cast<size_t>(n));
  return reply;
}

Result<std::optional<DiagInfo>> parse_diag_reply(std::string_view reply, uint64_t ino) {
  auto buf = aligned_copy(reply);
  std::optional<DiagInfo> found;
  auto walked = netlink_reply::walk(
      reinterpret_cast<const char*>(buf.data()), std::min(reply.size(), buf.size() * 8),
      fmt::format("sock_diag of socket:[{}]", ino), [&](const nlmsghdr* h) {
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
            h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg)))
          return false;
        auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
        if (msg->udiag_ino != ino) return false;
        found = parse_attributes(msg, h->nlmsg_len - NLMSG_LENGTH(0));
        return true;
      });
  if (!walked.ok() && walked.error().errnum == ENOENT) return std::optional<DiagInfo>();
  if (!walked.ok()) return walked.error();
  return found;
}

}  // namespace ckpt::fds::unix_diag
