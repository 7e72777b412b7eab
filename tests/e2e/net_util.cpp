#include "net_util.hpp"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "e2e_util.hpp"

namespace e2e {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

}  // namespace

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  bool ok = s >= 0 && ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  int err = errno;
  if (s >= 0) ::close(s);
  if (!ok) throw std::runtime_error(std::string("no free loopback port: ") + strerror(err));
  return ntohs(a.sin_port);
}

int connect_when_up(int port) {
  for (int i = 0; i < 100; ++i) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a = loopback(port);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return s;
    ::close(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

std::string exchange(int fd, const std::string& request, const std::string& end) {
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size()))
    return std::string("send: ") + strerror(errno);
  std::string out;
  char buf[4096];
  while (out.find(end) == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out + (n < 0 ? std::string(" [recv: ") + strerror(errno) + "]" : " [EOF]");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int printed_port(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("PORT (\\d+)"))) return -1;
  return std::stoi(m[1]);
}

unsigned char pattern(long k) {
  return static_cast<unsigned char>((k * 7) % 251);
}

int connect_to(int family, int port) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof a;
  } else {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof a;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_pattern(int fd, long from, long to) {
  std::vector<unsigned char> buf;
  for (long k = from; k < to; ++k) buf.push_back(pattern(k));
  size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

::testing::AssertionResult read_pattern(int fd, long count) {
  std::vector<unsigned char> buf(65536);
  long got = 0;
  while (got < count) {
    ssize_t n = ::recv(fd, buf.data(), std::min<long>(count - got, 65536), 0);
    if (n <= 0)
      return ::testing::AssertionFailure() << "read " << got << " of " << count
                                           << " bytes: " << (n < 0 ? strerror(errno) : "EOF");
    for (ssize_t i = 0; i < n; ++i)
      if (buf[i] != pattern(got + i))
        return ::testing::AssertionFailure() << "byte " << got + i << " is " << int(buf[i]);
    got += n;
  }
  return ::testing::AssertionSuccess();
}

// Whether the lock table holds an element ending in `port` (the dumped side's). Elements are
// listed "a . p . b . q" and separated by ", " or line ends when there are several (another
// dump's, at the same time).
bool locked_port(int port) {
  auto r = run_command({"/usr/sbin/nft", "list", "table", "inet", "ckpt"});
  return std::regex_search(r.out, std::regex("\\. " + std::to_string(port) + "([^0-9]|$)"));
}

namespace {

bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) return std::memcmp(&a, &b, sizeof(sockaddr_in)) == 0;
  return std::memcmp(&a, &b, sizeof(sockaddr_in6)) == 0;
}

// A copy of the socket of process `pid` whose other end is `client`, or -1.
int far_end(pid_t pid, int client) {
  sockaddr_storage here{}, there{};
  socklen_t len = sizeof here;
  if (::getsockname(client, reinterpret_cast<sockaddr*>(&here), &len) < 0) return -1;
  len = sizeof there;
  if (::getpeername(client, reinterpret_cast<sockaddr*>(&there), &len) < 0) return -1;
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return -1;
  int found = -1;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    int fd = static_cast<int>(
        ::syscall(SYS_pidfd_getfd, pidfd, std::atoi(e.path().filename().c_str()), 0));
    if (fd < 0) continue;
    sockaddr_storage local{}, peer{};
    socklen_t llen = sizeof local, plen = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) == 0 &&
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0 &&
        same_address(local, there) && same_address(peer, here)) {
      found = fd;
      break;
    }
    ::close(fd);
  }
  ::close(pidfd);
  return found;
}

}  // namespace

long unsent_at_far_end(pid_t pid, int client) {
  int fd = far_end(pid, client);
  int n = -1;
  if (fd >= 0 && ::ioctl(fd, SIOCOUTQNSD, &n) < 0) n = -1;
  if (fd >= 0) ::close(fd);
  return n;
}

long send_mss_at_far_end(pid_t pid, int client) {
  int fd = far_end(pid, client);
  tcp_info info{};
  socklen_t len = sizeof info;
  long mss = -1;
  if (fd >= 0 && ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0) mss = info.tcpi_snd_mss;
  if (fd >= 0) ::close(fd);
  return mss;
}

}  // namespace e2e
