#include "common/guard_process.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace ckpt {

Result<GuardProcess> fork_guard(std::string_view what, void (*body)(int channel)) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
    return sys_error(fmt::format("socketpair for the {}", what));
  ScopedFd ours(pair[0]), theirs(pair[1]);
  pid_t pid = ::fork();
  if (pid < 0) return sys_error(fmt::format("fork of the {}", what));
  if (pid == 0) {
    // Nothing of ckpt's but the channel: a report pipe or a store lock held open here would keep
    // someone waiting.
    int keep = theirs.get();
    if (keep > 3) ::syscall(SYS_close_range, 3, keep - 1, 0);
    ::syscall(SYS_close_range, keep + 1, ~0U, 0);
    body(keep);
    ::_exit(1);  // a body does not return
  }
  return GuardProcess{pid, std::move(ours)};
}

Status send_with_fds(int channel, const void* msg, size_t len, std::span<const int> fds,
                     std::string_view what) {
  constexpr size_t kMaxFds = 4;
  if (fds.size() > kMaxFds) return errorf("{}: {} fds in one message", what, fds.size());
  iovec iov{const_cast<void*>(msg), len};
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))] = {};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  if (!fds.empty()) {
    h.msg_control = control;
    h.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  if (::sendmsg(channel, &h, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) return sys_error(what);
  return {};
}

ssize_t receive_with_fd(int channel, void* buf, size_t len, int* fd) {
  *fd = -1;
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  h.msg_control = control;
  h.msg_controllen = sizeof control;
  ssize_t n;
  while ((n = ::recvmsg(channel, &h, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  cmsghdr* c = CMSG_FIRSTHDR(&h);
  if (n > 0 && c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
    std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

}  // namespace ckpt
