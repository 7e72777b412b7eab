#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/fs_util.hpp"
#include "common/populate.hpp"
#include "common/result.hpp"
#include "support/temp_dir.hpp"

namespace ckpt {
namespace {

using TempDir = ckpt::test_support::TempDir;

Result<int> half(int x) {
  if (x % 2) return errorf("{} is odd", x);
  return x / 2;
}

Result<int> quarter(int x) {
  CKPT_TRY_ASSIGN(int h, half(x));
  return half(h);
}

TEST(Result, PropagatesTheFirstError) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "3 is odd");
  EXPECT_EQ(r.error().wrap("quarter 6").message, "quarter 6: 3 is odd");
}

TEST(FsUtil, AtomicWriteReplacesWholeFileWithPrivateMode) {
  TempDir dir;
  ASSERT_TRUE(write_file_atomic(dir.path(), "f", as_bytes("first")).ok());
  ASSERT_TRUE(write_file_atomic(dir.path(), "f", as_bytes("second")).ok());
  auto data = read_file(dir.path() / "f");
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(data->data()), data->size()), "second");
  struct stat st;
  ASSERT_EQ(stat((dir.path() / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temporary file is left behind.
  int entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST(FsUtil, ReadExactReportsTruncation) {
  TempDir dir;
  ASSERT_TRUE(write_file_atomic(dir.path(), "short", as_bytes("abc")).ok());
  auto fd = open_file(dir.path() / "short", O_RDONLY);
  ASSERT_TRUE(fd.ok());
  std::byte buf[10];
  auto st = read_exact(fd->get(), buf, "short");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("truncated (got 3 of 10 bytes)"), std::string::npos);
}

TEST(FsUtil, OpenMissingFileNamesIt) {
  auto fd = open_file("/nonexistent/ckpt/x", O_RDONLY);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.error().errnum, ENOENT);
  EXPECT_NE(fd.error().message.find("/nonexistent/ckpt/x"), std::string::npos);
}

}  // namespace
}  // namespace ckpt

namespace {

// AnonHugePages of the mapping of this process that holds `p`, in kB; -1 if none holds it.
long anon_huge_kb_at(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  auto at = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> start >> dash >> end && dash == '-') {
      inside = start <= at && at < end;
      continue;
    }
    long kb = 0;
    if (inside && std::sscanf(line.c_str(), "AnonHugePages: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}

}  // namespace

// Big buffers start on a huge page, so that all of them can be huge pages (a fresh small page
// costs a host exit on its first touch here), and a vector keeps its contents as it grows past
// the size where its storage changes kind.
TEST(HugeVector, BigStorageStartsOnAHugePageAndKeepsItsContentsAsItGrows) {
  ckpt::HugeVector<uint64_t> v;
  for (uint64_t i = 0; i < (uint64_t{8} << 20) / sizeof(uint64_t); ++i) {
    v.push_back(i * 7);
    if (v.capacity() * sizeof(uint64_t) >= ckpt::huge::kHugePage) {
      ASSERT_EQ(reinterpret_cast<uintptr_t>(v.data()) % ckpt::huge::kHugePage, 0u) << i;
    }
  }
  for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], i * 7) << i;
  ckpt::HugeVector<char> small(100, 'x');
  EXPECT_EQ(std::string(small.begin(), small.end()), std::string(100, 'x'));
}

TEST(HugeBuffer, IsBackedByHugePagesOncePopulated) {
  ckpt::HugeBuffer buf(size_t{4} << 20);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % ckpt::huge::kHugePage, 0u);
  ckpt::populate(buf.data(), buf.size());
  EXPECT_GE(anon_huge_kb_at(buf.data()), 4096);
  ckpt::HugeBuffer moved(std::move(buf));  // one owner: the end of both unmaps it once
  moved.data()[0] = 1;
}

// The room an incremental dump backs before its freeze: pieces that never overlap, from several
// threads at once, and nothing (not a short piece) once it has not enough left.
TEST(BackedArena, HandsOutDisjointPiecesUntilItHasNotEnoughLeft) {
  ckpt::BackedArena arena((size_t{4} << 20) + 2);
  EXPECT_GE(anon_huge_kb_at(arena.take(1).data()), 2048) << "backed at once";
  std::vector<std::span<char>> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i)
    threads.emplace_back([&, i] { got[i] = arena.take(size_t{1} << 20); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), size_t{1} << 20) << i;
    std::memset(got[i].data(), static_cast<int>('a' + i), got[i].size());
  }
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i].back(), static_cast<char>('a' + i)) << "piece " << i << " overlaps another";
  EXPECT_TRUE(arena.take(2).empty()) << "1 byte left";
  EXPECT_EQ(arena.take(1).size(), 1u);
  EXPECT_TRUE(arena.take(0).empty());
}
