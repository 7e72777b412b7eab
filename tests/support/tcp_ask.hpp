#pragma once
// One request and its answer on a connected stream socket, for tests that are a server's client:
// the answer as one read got it, or what went wrong ("send: ...", "recv: ...", "EOF").
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ckpt::test_support {

inline std::string ask(int fd, const std::string& msg) {
  if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size()))
    return std::string("send: ") + std::strerror(errno);
  char buf[256];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n <= 0) return n < 0 ? std::string("recv: ") + std::strerror(errno) : "EOF";
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace ckpt::test_support
