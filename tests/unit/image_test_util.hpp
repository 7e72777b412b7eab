#pragma once
// Helpers shared by the image tests.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "image/store.hpp"
#include "support/temp_dir.hpp"

namespace ckpt::image {

namespace fs = std::filesystem;

using TempDir = ckpt::test_support::TempDir;

inline std::vector<std::byte> pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>((i / 4096) % 3 == 0 ? 0 : rng() & 0xff);
  return v;
}

inline Store open_store(const fs::path& dir) {
  auto s = Store::open(dir, {.create = true});
  EXPECT_TRUE(s.ok()) << s.error().message;
  return std::move(*s);
}

inline GenerationInfo write_gen(Store& store,
                                std::map<std::string, std::vector<std::byte>> sections,
                                Compression c = Compression::none) {
  auto w = store.begin_generation({.compression = c});
  EXPECT_TRUE(w.ok()) << w.error().message;
  (*w)->set_label("kind", "test");
  for (auto& [name, data] : sections) EXPECT_TRUE((*w)->write_section(name, data).ok());
  auto gen = (*w)->commit();
  EXPECT_TRUE(gen.ok()) << gen.error().message;
  return *gen;
}

inline std::vector<std::string> dir_names(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline void flip_byte(const fs::path& file, uint64_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  unsigned char b;
  ASSERT_EQ(pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x10;
  ASSERT_EQ(pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  close(fd);
}

}  // namespace ckpt::image
