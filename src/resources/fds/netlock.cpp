#include "resources/fds/netlock.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/child_process.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::fds::netlock {
namespace {

// Written whole each time: `add` leaves what exists alone and the flushes keep each chain at
// three rules, so concurrent dumps and repeated locks agree. The first rule of each lets the
// restorer's own packets (kPassMark) through. Both ways are dropped: the peer's packets on input,
// and on output what the kernel still sends for a stopped process (a window probe's new data, a
// paced segment) once its state has been read, which the peer would otherwise receive while the
// image counts it unsent. Set elements are (peer, peer port, local, local port).
std::string setup_script() {
  return fmt::format(
      "add table inet ckpt\n"
      "add set inet ckpt conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n"
      "add set inet ckpt conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n"
      "add chain inet ckpt input {{ type filter hook input priority -300; policy accept; }}\n"
      "flush chain inet ckpt input\n"
      "add rule inet ckpt input meta mark {0:#x} accept\n"
      "add rule inet ckpt input ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n"
      "add rule inet ckpt input ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
      // Output packets go from local to peer: the same elements, read the other way round.
      "add chain inet ckpt output {{ type filter hook output priority -300; policy accept; }}\n"
      "flush chain inet ckpt output\n"
      "add rule inet ckpt output meta mark {0:#x} accept\n"
      "add rule inet ckpt output ip daddr . tcp dport . ip saddr . tcp sport @conns4 drop\n"
      "add rule inet ckpt output ip6 daddr . tcp dport . ip6 saddr . tcp sport @conns6 drop\n",
      kPassMark);
}

// An IPv6 socket talking to an IPv4 peer (::ffff:a.b.c.d) sends and receives IPv4 packets.
bool v4_mapped(const Connection& c) {
  if (!c.v6 || c.local.size() != 16 || c.peer.size() != 16) return false;
  auto mapped = [](const schema::Bytes& a) {
    return IN6_IS_ADDR_V4MAPPED(reinterpret_cast<const in6_addr*>(a.data()));
  };
  return mapped(c.local) && mapped(c.peer);
}

std::string address(const schema::Bytes& a, bool v6, bool mapped) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (mapped)
    ::inet_ntop(AF_INET, a.data() + 12, buf, sizeof(buf));
  else if (a.size() == (v6 ? 16u : 4u))
    ::inet_ntop(v6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof(buf));
  return buf;
}

std::string element(const Connection& c) {
  bool mapped = v4_mapped(c);
  bool v6 = c.v6 && !mapped;
  return fmt::format("inet ckpt {} {{ {} . {} . {} . {} }}", v6 ? "conns6" : "conns4",
                     address(c.peer, c.v6, mapped), c.peer_port, address(c.local, c.v6, mapped),
                     c.local_port);
}

// Runs `nft -f -` with `script` on its input; the error names nft's own first line.
Status run_nft(const std::string& script) {
  int in[2], err[2];
  if (::pipe2(in, O_CLOEXEC) < 0) return sys_error("pipe2 for nft");
  ScopedFd in_rd(in[0]), in_wr(in[1]);
  if (::pipe2(err, O_CLOEXEC) < 0) return sys_error("pipe2 for nft");
  ScopedFd err_rd(err[0]), err_wr(err[1]);
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork for nft");
  if (pid == 0) {
    ::dup2(in_rd.get(), 0);
    ::dup2(err_wr.get(), 1);
    ::dup2(err_wr.get(), 2);
    ::execlp("nft", "nft", "-f", "-", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  in_rd.reset();
  err_wr.reset();
  // The script is far smaller than a pipe: the write cannot block on nft.
  (void)!::write(in_wr.get(), script.data(), script.size());
  in_wr.reset();
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(err_rd.get(), buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  int status = wait_end(pid);
  if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    return make_error("cannot run nft (Debian package nftables)");
  std::string first = out.substr(0, out.find('\n'));
  return errorf("nft: {}", first.empty() ? "failed" : first);
}

}  // namespace

std::string text(const Connection& c) {
  auto side = [&](const schema::Bytes& a, uint16_t port) {
    std::string host = address(a, c.v6, false);
    return c.v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
  };
  return side(c.local, c.local_port) + " -> " + side(c.peer, c.peer_port);
}

Status lock(const Connection& c) {
  Status st = run_nft(setup_script() + "add element " + element(c) + "\n");
  if (!st.ok()) return st.error().wrap("lock the network of " + text(c));
  return {};
}

Status unlock(const Connection& c) {
  // A connection never locked (or unlocked already) makes nft fail with ENOENT: nothing to do.
  Status st = run_nft("delete element " + element(c) + "\n");
  if (st.ok() || st.error().message.find("No such file") != std::string::npos) return {};
  return st.error().wrap("unlock the network of " + text(c));
}

}  // namespace ckpt::fds::netlock
