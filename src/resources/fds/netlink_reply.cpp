#include "resources/fds/netlink_reply.hpp"

namespace ckpt::fds::netlink_reply {

Result<End> walk(const char* base, size_t len, std::string_view what,
                 const std::function<bool(const nlmsghdr*)>& each) {
  for (size_t at = 0; len - at >= sizeof(nlmsghdr);) {
    auto* h = reinterpret_cast<const nlmsghdr*>(base + at);
    if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > len - at) break;
    if (h->nlmsg_type == NLMSG_DONE) return End::done;
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)))
        return errorf("{}: a short error message", what);
      auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (err->error != 0) return sys_error(-err->error, std::string(what));
    } else if (each(h)) {
      return End::stopped;
    }
    at += NLMSG_ALIGN(h->nlmsg_len);
    if (at > len) break;
  }
  return End::more;
}

}  // namespace ckpt::fds::netlink_reply
