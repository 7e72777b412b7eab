#include "resources/fds/fd_kind.hpp"

#include <sys/socket.h>

#include "proc/proc_file.hpp"
#include "resources/fds/fd_access.hpp"

namespace ckpt::fds {

Result<FdProbe> FdProbe::read(pid_t pid, int fd) {
  FdProbe p;
  p.pid = pid;
  p.fd = fd;
  CKPT_TRY_ASSIGN(p.link, proc::read_proc_link(pid, fmt::format("fd/{}", fd)));
  CKPT_TRY_ASSIGN(p.info, proc::read_fdinfo(pid, fd));
  std::string path = proc::proc_path(pid, fmt::format("fd/{}", fd));
  if (::stat(path.c_str(), &p.st) < 0) return sys_error(fmt::format("stat {} ({})", path, p.link));
  if (S_ISSOCK(p.st.st_mode)) {
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    p.domain = int_sockopt(sock, SOL_SOCKET, SO_DOMAIN);
    p.type = int_sockopt(sock, SOL_SOCKET, SO_TYPE);
    p.protocol = int_sockopt(sock, SOL_SOCKET, SO_PROTOCOL);
  }
  return p;
}

Result<int> FdProbe::borrowed() {
  if (!borrowed_) {
    CKPT_TRY_ASSIGN(ScopedFd fd, borrow_fd(pid, fd));
    borrowed_.emplace(std::move(fd));
  }
  return borrowed_->get();
}

const FdKind* find_kind(std::string_view name) {
  for (const FdKind* k : all_kinds())
    if (k->name() == name) return k;
  return nullptr;
}

}  // namespace ckpt::fds
