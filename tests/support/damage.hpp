#pragma once
// Damaging a generation on purpose, for the tests of what a damaged image does.
// Shared by every test folder (tests/ is on their include path).
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

namespace ckpt::test_support {

// The largest data file of a generation directory: its pages are most of it.
inline std::filesystem::path pages_file(const std::filesystem::path& gen) {
  std::filesystem::path biggest;
  uintmax_t size = 0;
  for (auto& f : std::filesystem::directory_iterator(gen))
    if (f.path().filename() != "manifest" && f.file_size() > size) {
      size = f.file_size();
      biggest = f.path();
    }
  return biggest;
}

// Flips one byte in the middle of `file`; false if it cannot.
inline bool flip_byte_in_middle(const std::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  auto at = static_cast<off_t>(std::filesystem::file_size(file) / 2);
  char c = 0;
  bool ok = ::pread(fd, &c, 1, at) == 1;
  c = static_cast<char>(c ^ 0x5a);
  ok = ok && ::pwrite(fd, &c, 1, at) == 1;
  ::close(fd);
  return ok;
}

}  // namespace ckpt::test_support
