#include "common/result.hpp"

#include <cstring>

namespace ckpt {

Error sys_error(int errnum, std::string_view what) {
  return Error{errnum, fmt::format("{}: {}", what, std::strerror(errnum))};
}

Error sys_error(std::string_view what) {
  return sys_error(errno, what);
}

Error make_error(std::string_view what, int errnum) {
  return Error{errnum, std::string(what)};
}

}  // namespace ckpt
