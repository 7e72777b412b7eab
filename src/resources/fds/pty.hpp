#pragma once
// Pseudo-terminals (pty.cpp): what the restore needs besides the fd kind itself.
#include <sys/types.h>

#include <cstdint>
#include <functional>

#include "common/result.hpp"
#include "image/schema/records.hpp"

namespace ckpt::fds {

// In the puppet of a session leader, before it creates its children: the session takes its
// pseudo-terminal as controlling terminal again (TIOCSCTTY), so that the processes it creates
// inherit it, as they had. `fd_of` gives the puppet's descriptor of an open file by id (the
// restorer's copies it inherited), -1 if it has none.
Status take_controlling_terminal(const schema::ImageRoot& image, pid_t pid,
                                 const std::function<int(uint32_t id)>& fd_of);

}  // namespace ckpt::fds
