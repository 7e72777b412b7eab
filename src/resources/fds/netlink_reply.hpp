#pragma once
// One walk over the messages of a sock_diag reply, for unix_diag and inet_diag: bounds checked,
// NLMSG_DONE ends it, an NLMSG_ERROR with an error ends it with that errno, an acknowledgement is
// passed over.
#include <linux/netlink.h>

#include <cstddef>
#include <functional>
#include <string_view>

#include "common/result.hpp"

namespace ckpt::fds::netlink_reply {

enum class End { done, stopped, more };  // NLMSG_DONE met, `each` said stop, the buffer ran out

// Calls `each` for every other message of [base, base + len), 8-byte aligned, until it returns
// true. `what` names the request in an error.
Result<End> walk(const char* base, size_t len, std::string_view what,
                 const std::function<bool(const nlmsghdr*)>& each);

}  // namespace ckpt::fds::netlink_reply
