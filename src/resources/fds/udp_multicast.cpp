#include "resources/fds/udp_multicast.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace ckpt::fds::multicast {
namespace {

constexpr uint32_t kMaxSources = 64;

struct Listed {
  int32_t ifindex = 0;
  std::string device;
  inet::Endpoint group;
};

inet::Endpoint address(bool v6, const void* bytes) {
  inet::Endpoint e;
  e.v6 = v6;
  auto* b = static_cast<const uint8_t*>(bytes);
  e.addr.assign(b, b + (v6 ? 16 : 4));
  return e;
}

// /proc/net/igmp: an interface line ("1<TAB>lo : ..."), then one tab-indented line per group,
// the group printed as the hex of its network-order 32 bits read as a host integer.
std::vector<Listed> listed_v4() {
  std::vector<Listed> out;
  std::ifstream in("/proc/net/igmp");
  std::string line, device;
  int32_t ifindex = 0;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream s(line);
    if (!line.empty() && line[0] != '\t') {
      s >> ifindex >> device;
      continue;
    }
    std::string hex;
    if (!(s >> hex)) continue;
    uint32_t raw = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
    out.push_back({ifindex, device, address(false, &raw)});
  }
  return out;
}

// /proc/net/igmp6: "index device group-as-32-hex-digits users flags timer".
std::vector<Listed> listed_v6() {
  std::vector<Listed> out;
  std::ifstream in("/proc/net/igmp6");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    Listed l;
    std::string hex;
    if (!(s >> l.ifindex >> l.device >> hex) || hex.size() != 32) continue;
    uint8_t b[16];
    for (int i = 0; i < 16; ++i)
      b[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), 0, 16));
    l.group = address(true, b);
    out.push_back(l);
  }
  return out;
}

struct Filter {
  std::unique_ptr<std::byte[]> storage{new std::byte[GROUP_FILTER_SIZE(kMaxSources)]()};
  group_filter* gf() { return reinterpret_cast<group_filter*>(storage.get()); }
};

Status set_group(sockaddr_storage& out, const inet::Endpoint& e) {
  socklen_t len = 0;
  CKPT_TRY_ASSIGN(out, inet::sockaddr_of(e, len));
  return {};
}

std::string where(const Membership& m) {
  return fmt::format("multicast group {} on {} (interface {})", inet::endpoint_text(m.group),
                     m.device, m.ifindex);
}

}  // namespace

Result<std::vector<Membership>> read(int sock, bool v6, const std::string& what) {
  std::vector<Membership> out;
  int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
  for (auto& l : v6 ? listed_v6() : listed_v4()) {
    Filter f;
    group_filter* gf = f.gf();
    gf->gf_interface = static_cast<uint32_t>(l.ifindex);
    CKPT_TRY(set_group(gf->gf_group, l.group));
    gf->gf_numsrc = kMaxSources;
    socklen_t len = GROUP_FILTER_SIZE(kMaxSources);
    if (::getsockopt(sock, level, MCAST_MSFILTER, gf, &len) < 0) {
      if (errno == EADDRNOTAVAIL || errno == EINVAL) continue;  // not a group of this socket
      return sys_error(fmt::format("{}: filter of multicast group {} on {}", what,
                                   inet::endpoint_text(l.group), l.device));
    }
    if (gf->gf_numsrc > kMaxSources)
      return errorf("{}: multicast group {} on {} has {} source filters; ckpt saves at most {}",
                    what, inet::endpoint_text(l.group), l.device, gf->gf_numsrc, kMaxSources);
    Membership m{l.ifindex, l.device, l.group, gf->gf_fmode == MCAST_INCLUDE, {}};
    const sockaddr_storage* slist = gf->gf_slist;  // gf_numsrc of them (declared as one)
    for (uint32_t i = 0; i < gf->gf_numsrc; ++i) m.sources.push_back(inet::endpoint_of(slist[i]));
    out.push_back(std::move(m));
  }
  return out;
}

Status join(int sock, bool v6, const std::vector<Membership>& groups, const std::string& what) {
  int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
  for (auto& m : groups) {
    group_req req{};
    req.gr_interface = static_cast<uint32_t>(m.ifindex);
    CKPT_TRY(set_group(req.gr_group, m.group));
    if (::setsockopt(sock, level, MCAST_JOIN_GROUP, &req, sizeof req) < 0)
      return sys_error(fmt::format("{}: join {} again", what, where(m)));
    if (!m.include && m.sources.empty()) continue;
    if (m.sources.size() > kMaxSources)
      return errorf("{}: {} has {} sources in the image", what, where(m), m.sources.size());
    Filter f;
    group_filter* gf = f.gf();
    gf->gf_interface = static_cast<uint32_t>(m.ifindex);
    gf->gf_group = req.gr_group;
    gf->gf_fmode = m.include ? MCAST_INCLUDE : MCAST_EXCLUDE;
    gf->gf_numsrc = static_cast<uint32_t>(m.sources.size());
    sockaddr_storage* slist = gf->gf_slist;
    for (size_t i = 0; i < m.sources.size(); ++i) CKPT_TRY(set_group(slist[i], m.sources[i]));
    if (::setsockopt(sock, level, MCAST_MSFILTER, gf, GROUP_FILTER_SIZE(gf->gf_numsrc)) < 0)
      return sys_error(fmt::format("{}: source filter of {}", what, where(m)));
  }
  return {};
}

}  // namespace ckpt::fds::multicast
