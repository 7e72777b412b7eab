// ENOSPC while writing: a clear error naming the file, no leftovers, older generations intact.
#include <sys/mount.h>

#include <gtest/gtest.h>

#include "image/store.hpp"
#include "store_test_util.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;

// A 2 MiB filesystem mounted for the test: tmpfs, or a loop-mounted ext4 image.
class SmallFs {
 public:
  SmallFs() {
    dir_ = tmp_.path() / "mnt";
    fs::create_directory(dir_);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=2m,mode=0700") == 0) {
      mounted_ = true;
      return;
    }
    why_ = std::string("mount tmpfs: ") + strerror(errno);
    auto img = tmp_.path() / "fs.img";
    std::string cmd = "truncate -s 4M " + img.string() + " && mkfs.ext4 -q " + img.string() +
                      " && mount -o loop " + img.string() + " " + dir_.string() + " 2>/dev/null";
    if (std::system(cmd.c_str()) == 0)
      mounted_ = true;
    else
      why_ += "; loop-mounted ext4 failed too";
  }
  ~SmallFs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  const fs::path& dir() const { return dir_; }

 private:
  test::TempDir tmp_;
  fs::path dir_;
  bool mounted_ = false;
  std::string why_;
};

TEST(StoreEnospc, FailedWriteKeepsEarlierGenerations) {
  SmallFs small;
  if (!small.mounted()) GTEST_SKIP() << "cannot mount a small filesystem: " << small.why();
  auto store = Store::open(small.dir() / "s", {.create = true});
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto first = store->begin_generation();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->write_section("mem", test::content(100000, 1)).ok());
  auto good = (*first)->commit();
  ASSERT_TRUE(good.ok()) << good.error().message;

  std::string error;
  {
    auto w = store->begin_generation();
    ASSERT_TRUE(w.ok());
    auto big = test::content(8 << 20, 2);
    Status st = (*w)->write_section("mem", big);
    if (st.ok()) {
      auto gen = (*w)->commit();
      ASSERT_FALSE(gen.ok()) << "8 MiB fit on a 2 MiB filesystem";
      error = gen.error().message;
    } else {
      error = st.error().message;
    }
  }
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  EXPECT_NE(error.find((small.dir() / "s" / ".tmp-").string()), std::string::npos) << error;

  auto again = Store::open(small.dir() / "s");
  ASSERT_TRUE(again.ok());
  auto latest = again->latest_valid();
  ASSERT_TRUE(latest.ok()) << latest.error().message;
  EXPECT_EQ(latest->id, good->id);
  EXPECT_EQ(again->list().size(), 1u);
  for (auto& e : fs::directory_iterator(small.dir() / "s"))
    EXPECT_FALSE(e.path().filename().string().starts_with(".tmp")) << e.path();
  // The space is back: the next generation fits again.
  auto w = again->begin_generation();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->write_section("mem", test::content(100000, 3)).ok());
  EXPECT_TRUE((*w)->commit().ok());
}

}  // namespace
}  // namespace ckpt::image
