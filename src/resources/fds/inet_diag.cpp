#include "resources/fds/inet_diag.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <vector>

#include "common/scoped_fd.hpp"
#include "resources/fds/netlink_reply.hpp"

namespace ckpt::fds::inet_diag {
namespace {

// The request: every socket of the family and protocol, in any state, filtered in the kernel by
// a two-word bytecode "local port == port" (jump past the end, i.e. reject, otherwise).
struct Request {
  nlmsghdr head;
  inet_diag_req_v2 req;
  nlattr bytecode_head;
  inet_diag_bc_op ops[2];
};

Request request_for(int family, int protocol, uint16_t port) {
  Request r{};
  r.head.nlmsg_len = sizeof(r);
  r.head.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  r.head.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  r.head.nlmsg_seq = 1;
  r.req.sdiag_family = static_cast<uint8_t>(family);
  r.req.sdiag_protocol = static_cast<uint8_t>(protocol);
  r.req.idiag_states = ~0U;
  r.bytecode_head.nla_len = sizeof(r.bytecode_head) + sizeof(r.ops);
  r.bytecode_head.nla_type = INET_DIAG_REQ_BYTECODE;
  r.ops[0] = {INET_DIAG_BC_S_EQ, sizeof(r.ops), sizeof(r.ops) + 4};
  r.ops[1] = {0, 0, port};
  return r;
}

// The INET_DIAG_SHUTDOWN attribute of one reply message, if it is the socket `ino`.
std::optional<int> shutdown_in(const nlmsghdr* h, uint64_t ino) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return std::nullopt;
  auto* msg = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
  if (msg->idiag_inode != ino) return std::nullopt;
  auto* attr = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(msg) +
                                               NLMSG_ALIGN(sizeof(inet_diag_msg)));
  int left = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(inet_diag_msg))));
  for (; RTA_OK(attr, left); attr = RTA_NEXT(attr, left))
    if (attr->rta_type == INET_DIAG_SHUTDOWN && RTA_PAYLOAD(attr) >= 1)
      return *static_cast<const uint8_t*>(RTA_DATA(attr));
  return 0;  // a kernel before 3.7 sends no such attribute
}

}  // namespace

Result<int> shutdown_of(int family, int protocol, uint16_t port, uint64_t ino) {
  std::string what = fmt::format("sock_diag of socket:[{}]", ino);
  ScopedFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return sys_error("socket NETLINK_SOCK_DIAG");
  Request r = request_for(family, protocol, port);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &r, sizeof(r), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) <
      0)
    return sys_error(what);
  std::vector<uint64_t> buf(8192);  // aligned for the netlink macros
  std::optional<int> found;
  for (;;) {
    ssize_t n = ::recv(nl.get(), buf.data(), buf.size() * 8, 0);
    if (n < 0) return sys_error(what);
    CKPT_TRY_ASSIGN(auto end,
                    netlink_reply::walk(reinterpret_cast<const char*>(buf.data()),
                                        static_cast<size_t>(n), what, [&](const nlmsghdr* h) {
                                          if (!found) found = shutdown_in(h, ino);
                                          return false;
                                        }));
    if (end != netlink_reply::End::done) continue;
    if (found) return *found;
    return errorf("{}: not listed on port {}", what, port);
  }
}

}  // namespace ckpt::fds::inet_diag
