#pragma once
// Files: every open descriptor with its number, flags, offset and close-on-exec bit: regular files
// (and the contents of deleted ones), directories, character devices such as /dev/null, and with
// --shell-job the terminal and standard streams, event fds (event_fds.hpp), listening TCP sockets
// (sockets.hpp), unix socket pairs (unix_sockets.hpp). Anything else makes the dump fail, naming
// it.
#include <map>
#include <vector>

#include "common/scoped_fd.hpp"
#include "resources/context.hpp"

namespace ckpt::files {

Status dump(DumpContext& ctx, bool shell_job);
// A copy of a process's fd (pidfd_getfd): the same open file, inspected without running the
// process.
Result<ScopedFd> borrow_fd(pid_t pid, int fd);

// Checks, before anything is built, that the files the image refers to are still as they were.
Status check_before_restore(const json& image);

// Opens the open file an fd of the image describes (not a pipe, not an inherited stream),
// close-on-exec, at any number; `reopen` is a path to open instead of the image's.
Result<ScopedFd> open_description(const json& f, const std::string& reopen = {});

// Runs inside the puppet before it is taken over: closes what the puppet inherited except the
// handed fds (moved above every fd of the image; their new numbers are written back), then
// opens every descriptor of the image at its number, taking the open files shared with other
// processes and the recreated deleted files from the handed fds. With shell_job, the standard
// streams and the terminal come from the restorer's own fds 0-2.
Status restore_in_puppet(const json& image, bool shell_job, HandedFds& handed);

}  // namespace ckpt::files
