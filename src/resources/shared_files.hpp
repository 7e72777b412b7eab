#pragma once
// Open files shared between the processes of a tree. A descriptor inherited through fork shares
// its open file (offset, flags) with its parent's, and a pipe may have its ends in different
// processes. Dump finds them (kcmp, pipe inodes) and records each once in the image's
// "shared_files"; restore opens each once in the restorer and hands it to every puppet, which
// puts a copy at each of its fds (files.cpp). Event fds and FIFOs opened separately by several
// processes are refused, naming them.
#include <string>
#include <utility>
#include <vector>

#include "common/scoped_fd.hpp"
#include "resources/context.hpp"

namespace ckpt::shared_files {

// Runs once every process's files are described: marks each fd whose open file (or pipe) other
// processes also hold with "shared", fills `shared` with one entry per such file, and refuses
// pipes with an end outside the tree.
Status link(const std::vector<DumpContext*>& procs, json& shared);

// In the restorer: opens each shared file of the image (pipes: both ends, refilled), keyed as
// handed_key() names them for the fds that use them. Deleted files come from `recreated`.
Result<std::vector<std::pair<std::string, ScopedFd>>> open_all(const json& shared,
                                                               const HandedFds& recreated);

// The key of the handed fd that an fd entry marked "shared" takes its open file from.
std::string handed_key(const json& fd_entry);

}  // namespace ckpt::shared_files
