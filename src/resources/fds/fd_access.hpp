#pragma once
// Helpers shared by the fd kinds: looking at another process's open file from ckpt without
// running that process, and the small steps of making one again.
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"
#include "image/schema/codec.hpp"

namespace ckpt::fds {

// A copy of fd `fd` of `pid` (pidfd_getfd): the same open file, inspected from here.
Result<ScopedFd> borrow_fd(pid_t pid, int fd);
// What a pipe (or FIFO) holds, read without taking it: tee() into a pipe of ckpt's own.
Result<schema::Bytes> peek_pipe(int pipe_fd, std::string_view what);
// Writes all of `data` into a pipe or socket that has room for it (a refill at restore).
Status refill(int fd, const schema::Bytes& data, std::string_view what);
// An int socket option, or -1.
int int_sockopt(int fd, int level, int opt);
// A socket's shutdown state as the kernel keeps it (sk_shutdown, which sock_diag reports), and
// the shutdown() argument that makes it again: SHUT_RD, SHUT_WR or SHUT_RDWR.
constexpr int kRcvShutdown = 1;
constexpr int kSendShutdown = 2;
int shutdown_how(int state);
bool is_tty_path(std::string_view path);
// Puts the status flags of the image (O_NONBLOCK, O_APPEND, O_ASYNC, ...) on an open file ckpt
// made itself (a pipe, a socket) rather than opened by path.
Status set_status_flags(int fd, uint32_t flags, std::string_view what);
// Opens `path` as a new open file with the image's `flags` (never creating or truncating),
// close-on-exec in ckpt; `reopen` does the same for an open file ckpt holds (/proc/self/fd/N).
Result<ScopedFd> open_path(const std::string& path, uint32_t flags, std::string_view what);
Result<ScopedFd> reopen(int fd, uint32_t flags, std::string_view what);
Status seek_to(int fd, uint64_t pos, std::string_view what);

}  // namespace ckpt::fds
