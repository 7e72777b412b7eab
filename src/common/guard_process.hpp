#pragma once
// A guard: a small process forked from ckpt that undoes or ends what ckpt would leave half done if
// it died (a TCP connection kept locked, a program whose memory is still arriving). It keeps only
// fds 0-2 and its end of a SEQPACKET channel; end of file on the channel before the word "done"
// means ckpt is gone. A guard is forked from a threaded ckpt: its body only makes system calls.
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string_view>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt {

struct GuardProcess {
  pid_t pid = -1;
  ScopedFd channel;  // ckpt's end
};

// Forks a guard that runs `body` (which never returns) with its end of the channel. `what` names
// it in errors.
Result<GuardProcess> fork_guard(std::string_view what, void (*body)(int channel));

// Sends one message of `len` bytes on `channel`, with `fds` attached (SCM_RIGHTS, at most 4).
Status send_with_fds(int channel, const void* msg, size_t len, std::span<const int> fds,
                     std::string_view what);

// Receives one message into `buf` (at most `len` bytes) and the fd that may come with it (-1 if
// none, close-on-exec). Returns the message's length, 0 at end of file, -1 on error.
ssize_t receive_with_fd(int channel, void* buf, size_t len, int* fd);

}  // namespace ckpt
