#pragma once
// A fresh directory under /tmp for one test, removed with everything in it when the test ends.
// Shared by every test folder (tests/ is on their include path).
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace ckpt::test_support {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "ckpt-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty if /tmp refused (a test then fails on its first use of it, naming the path).
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace ckpt::test_support
