#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "common/fs_util.hpp"
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
