#pragma once
// An open file the caller of a restore hands in for one of the image (CRIU's --inherit-fd
// fd[N]:KEY): the restorer's fd `fd` stands for the open file the image names `key`
// ("pipe:[123]", "socket:[456]" or a path, as /proc showed it at dump time).
#include <string>

namespace ckpt {

struct InheritFd {
  int fd = -1;
  std::string key;
};

}  // namespace ckpt
