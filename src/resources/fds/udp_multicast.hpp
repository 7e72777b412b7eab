#pragma once
// The multicast groups a UDP socket joined, with their source filters. A socket cannot list its
// groups, but the kernel lists every group joined on each interface (/proc/net/igmp, igmp6) and
// gives a socket's filter for one group (MCAST_MSFILTER) only when that socket joined it: each
// listed group is asked for. The restore joins again (MCAST_JOIN_GROUP on the same interface
// index) and sets the filter.
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "resources/fds/inet_state.hpp"

namespace ckpt::fds::multicast {

struct Membership {
  int32_t ifindex = 0;
  std::string device;  // the interface's name at the dump, for messages
  inet::Endpoint group;
  bool include = false;  // MCAST_INCLUDE: only from `sources`; else from all but them
  std::vector<inet::Endpoint> sources;
  template <class V>
  void visit(V& v) {
    v("ifindex", ifindex), v("device", device), v("group", group), v("include", include);
    v("sources", sources);
  }
};

// The groups `sock` (an IPv6 socket when `v6`) joined.
Result<std::vector<Membership>> read(int sock, bool v6, const std::string& what);

// Joins `sock` to every group again, with its filter.
Status join(int sock, bool v6, const std::vector<Membership>& groups, const std::string& what);

}  // namespace ckpt::fds::multicast
