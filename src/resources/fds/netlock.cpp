#include "resources/fds/netlock.hpp"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>

#include "common/child_process.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::fds::netlock {
namespace {

// Written whole when the set a lock adds to is missing: `add` leaves what exists alone and the
// flushes keep each chain at three rules, so concurrent dumps agree. The sets' names stand for
// this version of the rules: a table an older ckpt left (sets conns4/conns6, no output chain)
// lacks them, and is set up again. The first rule of each chain lets the restorer's own packets
// (kPassMark) through. Both ways are dropped: the peer's packets on input, and on output what the
// kernel still sends for a stopped process (a window probe's new data, a paced segment) once its
// state has been read, which the peer would otherwise receive while the image counts it unsent.
// Set elements are (peer, peer port, local, local port).
std::string setup_script() {
  return fmt::format(
      "add table inet ckpt\n"
      "add set inet ckpt locked4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n"
      "add set inet ckpt locked6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n"
      "add chain inet ckpt input {{ type filter hook input priority -300; policy accept; }}\n"
      "flush chain inet ckpt input\n"
      "add rule inet ckpt input meta mark {0:#x} accept\n"
      "add rule inet ckpt input ip saddr . tcp sport . ip daddr . tcp dport @locked4 drop\n"
      "add rule inet ckpt input ip6 saddr . tcp sport . ip6 daddr . tcp dport @locked6 drop\n"
      // Output packets go from local to peer: the same elements, read the other way round.
      "add chain inet ckpt output {{ type filter hook output priority -300; policy accept; }}\n"
      "flush chain inet ckpt output\n"
      "add rule inet ckpt output meta mark {0:#x} accept\n"
      "add rule inet ckpt output ip daddr . tcp dport . ip saddr . tcp sport @locked4 drop\n"
      "add rule inet ckpt output ip6 daddr . tcp dport . ip6 saddr . tcp sport @locked6 drop\n",
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
  return fmt::format("inet ckpt {} {{ {} . {} . {} . {} }}", v6 ? "locked6" : "locked4",
                     address(c.peer, c.v6, mapped), c.peer_port, address(c.local, c.v6, mapped),
                     c.local_port);
}

// Runs `nft -f -` with `script` on its input; the error names nft's own first line.
Status run_nft_command(const std::string& script) {
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

// libnftables, which the nft command is made of, loaded when first needed: a script then runs
// in-process, without a fork and exec of nft for each lock (10-30 ms here, in the frozen window).
// Loaded, not linked, so that programs linking libckpt do not carry it; the nftables package
// that installs nft installs it too.
struct Nftables {
  decltype(&nft_ctx_new) ctx_new = nullptr;
  decltype(&nft_ctx_free) ctx_free = nullptr;
  decltype(&nft_ctx_buffer_output) buffer_output = nullptr;
  decltype(&nft_ctx_buffer_error) buffer_error = nullptr;
  decltype(&nft_ctx_get_error_buffer) error_buffer = nullptr;
  decltype(&nft_run_cmd_from_buffer) run = nullptr;

  static const Nftables* get() {
    static const std::optional<Nftables> lib = load();
    return lib ? &*lib : nullptr;
  }

 private:
  static std::optional<Nftables> load() {
    void* h = ::dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return std::nullopt;
    Nftables n;
    bool all = find(h, "nft_ctx_new", n.ctx_new) && find(h, "nft_ctx_free", n.ctx_free) &&
               find(h, "nft_ctx_buffer_output", n.buffer_output) &&
               find(h, "nft_ctx_buffer_error", n.buffer_error) &&
               find(h, "nft_ctx_get_error_buffer", n.error_buffer) &&
               find(h, "nft_run_cmd_from_buffer", n.run);
    if (all) return n;  // kept loaded for the process's life
    ::dlclose(h);
    return std::nullopt;
  }
  template <class F>
  static bool find(void* h, const char* name, F& out) {
    out = reinterpret_cast<F>(::dlsym(h, name));
    return out != nullptr;
  }
};

Status run_nft(const std::string& script) {
  const Nftables* nft = Nftables::get();
  if (!nft) return run_nft_command(script);
  std::unique_ptr<nft_ctx, decltype(nft->ctx_free)> ctx(nft->ctx_new(NFT_CTX_DEFAULT),
                                                        nft->ctx_free);
  if (!ctx) return make_error("nft: no libnftables context");
  nft->buffer_output(ctx.get());
  nft->buffer_error(ctx.get());
  if (nft->run(ctx.get(), script.c_str()) == 0) return {};
  const char* err = nft->error_buffer(ctx.get());
  std::string text = err ? err : "";
  std::string first = text.substr(0, text.find('\n'));
  return errorf("nft: {}", first.empty() ? "failed" : first);
}

bool missing(const Error& e) {
  return e.message.find("No such file") != std::string::npos;
}

}  // namespace

std::string text(const Connection& c) {
  auto side = [&](const schema::Bytes& a, uint16_t port) {
    std::string host = address(a, c.v6, false);
    return c.v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
  };
  return side(c.local, c.local_port) + " -> " + side(c.peer, c.peer_port);
}

void preload() {
  (void)Nftables::get();
}

Status lock(const Connection& c) {
  // The table as an earlier dump left it takes the element alone (0.1-0.5 ms); making the table,
  // or writing its chains again, waits for the kernel's RCU grace periods (10-25 ms here).
  std::string add = "add element " + element(c) + "\n";
  Status st = run_nft(add);
  if (!st.ok() && missing(st.error())) st = run_nft(setup_script() + add);
  if (!st.ok()) return st.error().wrap("lock the network of " + text(c));
  return {};
}

Status unlock(const Connection& c) {
  // A connection never locked (or unlocked already) makes nft fail with ENOENT: nothing to do.
  Status st = run_nft("delete element " + element(c) + "\n");
  if (st.ok() || missing(st.error())) return {};
  return st.error().wrap("unlock the network of " + text(c));
}

}  // namespace ckpt::fds::netlock
