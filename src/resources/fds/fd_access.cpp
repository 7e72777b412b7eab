#include "resources/fds/fd_access.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdint>

namespace ckpt::fds {

Result<ScopedFd> borrow_fd(pid_t pid, int fd) {
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return sys_error(fmt::format("pidfd_open pid {}", pid));
  ScopedFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!copy) return sys_error(fmt::format("pidfd_getfd pid {} fd {}", pid, fd));
  return copy;
}

Result<schema::Bytes> peek_pipe(int pipe_fd, std::string_view what) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return sys_error("pipe2");
  ScopedFd r(p[0]), w(p[1]);
  int size = ::fcntl(pipe_fd, F_GETPIPE_SZ);
  if (size > 0) (void)::fcntl(w.get(), F_SETPIPE_SZ, size);
  ssize_t n = ::tee(pipe_fd, w.get(), INT_MAX, SPLICE_F_NONBLOCK);
  if (n < 0 && errno != EAGAIN) return sys_error(fmt::format("tee {}", what));
  schema::Bytes data(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0 && ::read(r.get(), data.data(), data.size()) != n)
    return sys_error(fmt::format("read the copy of {}", what));
  return data;
}

Status refill(int fd, const schema::Bytes& data, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error(fmt::format("refill {} ({} bytes)", what, data.size()));
    done += static_cast<size_t>(n);
  }
  return {};
}

int shutdown_how(int state) {
  if ((state & kRcvShutdown) && (state & kSendShutdown)) return SHUT_RDWR;
  return (state & kRcvShutdown) ? SHUT_RD : SHUT_WR;
}

int int_sockopt(int fd, int level, int opt) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
}

bool is_tty_path(std::string_view p) {
  return p.starts_with("/dev/pts/") || p.starts_with("/dev/tty") || p == "/dev/console";
}

Status set_status_flags(int fd, uint32_t flags, std::string_view what) {
  constexpr uint32_t kSettable = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK;
  if (::fcntl(fd, F_SETFL, flags & kSettable) < 0)
    return sys_error(fmt::format("fcntl(F_SETFL) on {}", what));
  return {};
}

Result<ScopedFd> open_path(const std::string& path, uint32_t flags, std::string_view what) {
  // open() with O_ASYNC shows the flag but registers the file for no signals: F_SETFL does.
  int open_flags =
      static_cast<int>(flags & ~uint32_t(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC | O_ASYNC));
  // A lease another process holds on a regular file would make open() wait out the kernel's
  // lease-break-time (45 s by default); O_NONBLOCK makes it fail at once (on a FIFO it would
  // mean something else).
  struct stat st {};
  int lease_nb = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? O_NONBLOCK : 0;
  // A terminal opened by a restorer that leads no session must not become its terminal.
  ScopedFd out(::open(path.c_str(), open_flags | lease_nb | O_CLOEXEC | O_NOCTTY));
  if (!out && lease_nb && errno == EWOULDBLOCK)
    return sys_error(fmt::format("open {}: another process holds a lease on it", what));
  if (!out) return sys_error(fmt::format("open {}", what));
  if (lease_nb && !(open_flags & O_NONBLOCK) &&
      ::fcntl(out.get(), F_SETFL, ::fcntl(out.get(), F_GETFL) & ~O_NONBLOCK) < 0)
    return sys_error(fmt::format("fcntl(F_SETFL) on {}", what));
  if ((flags & O_ASYNC) && ::fcntl(out.get(), F_SETFL, ::fcntl(out.get(), F_GETFL) | O_ASYNC) < 0)
    return sys_error(fmt::format("fcntl(F_SETFL, O_ASYNC) on {}", what));
  return out;
}

Result<ScopedFd> reopen(int fd, uint32_t flags, std::string_view what) {
  return open_path(fmt::format("/proc/self/fd/{}", fd), flags, what);
}

Status seek_to(int fd, uint64_t pos, std::string_view what) {
  if (pos > static_cast<uint64_t>(INT64_MAX))
    return errorf("seek {} to {}: out of range", what, pos);
  if (::lseek(fd, static_cast<off_t>(pos), SEEK_SET) < 0)
    return sys_error(fmt::format("seek {} to {}", what, pos));
  return {};
}

}  // namespace ckpt::fds
