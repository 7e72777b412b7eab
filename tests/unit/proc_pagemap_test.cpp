// Pagemap scanning against a child with a known pattern of touched and copied-on-write pages.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proc/pagemap.hpp"

namespace ckpt::proc {
namespace {

struct Layout {
  uint64_t anon;    // 64 pages, touched: 0-2, 10, 20-29, 63
  uint64_t file;    // 16 pages of a private file mapping, all read, 3 and 7-8 written
  uint64_t sparse;  // 1 GiB, touched at 0 and at 512 MiB
};

constexpr uint64_t kGiB = uint64_t{1} << 30;

[[noreturn]] void child_main(Layout* out, int ready_fd) {
  const long ps = sysconf(_SC_PAGESIZE);
  auto* anon = static_cast<volatile char*>(
      mmap(nullptr, 64 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  for (int p : {0, 1, 2, 10, 63}) anon[p * ps] = 1;
  for (int p = 20; p < 30; ++p) anon[p * ps] = 1;
  char path[] = "/tmp/ckpt-pagemap-XXXXXX";
  int fd = mkstemp(path);
  std::vector<char> data(16 * ps, 'x');
  (void)!write(fd, data.data(), data.size());
  unlink(path);
  auto* file = static_cast<volatile char*>(
      mmap(nullptr, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
  char sum = 0;
  for (int p = 0; p < 16; ++p) sum += file[p * ps];
  for (int p : {3, 7, 8}) file[p * ps] = sum;
  auto* sparse = static_cast<volatile char*>(mmap(
      nullptr, kGiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  sparse[0] = 1;
  sparse[kGiB / 2] = 1;
  *out = {reinterpret_cast<uint64_t>(anon), reinterpret_cast<uint64_t>(file),
          reinterpret_cast<uint64_t>(sparse)};
  (void)!write(ready_fd, "r", 1);
  for (;;) pause();
}

class PagemapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = static_cast<Layout*>(
        mmap(nullptr, sizeof(Layout), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_ = fork();
    if (pid_ == 0) child_main(layout_, p[1]);
    close(p[1]);
    char c;
    ASSERT_EQ(read(p[0], &c, 1), 1);
    close(p[0]);
  }
  void TearDown() override {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    munmap(layout_, sizeof(Layout));
  }
  // Page ranges [first, last) of a region, in addresses.
  std::vector<PageRange> pages(uint64_t base,
                               std::initializer_list<std::pair<uint64_t, uint64_t>> spans) {
    std::vector<PageRange> out;
    for (auto [a, b] : spans) out.push_back({base + a * ps_, base + b * ps_});
    return out;
  }

  const uint64_t ps_ = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  pid_t pid_ = 0;
  Layout* layout_ = nullptr;
};

TEST_F(PagemapTest, BothImplementationsFindTouchedAnonymousPages) {
  auto pm = Pagemap::open(pid_);
  ASSERT_TRUE(pm.ok()) << pm.error().message;
  uint64_t a = layout_->anon;
  auto want = pages(a, {{0, 3}, {10, 11}, {20, 30}, {63, 64}});
  auto by_ioctl = pm->scan_ioctl(a, a + 64 * ps_, PageFilter::private_anon);
  ASSERT_TRUE(by_ioctl.ok()) << by_ioctl.error().message;
  EXPECT_EQ(*by_ioctl, want);
  auto by_read = pm->scan_read(a, a + 64 * ps_, PageFilter::private_anon);
  ASSERT_TRUE(by_read.ok()) << by_read.error().message;
  EXPECT_EQ(*by_read, want);
  EXPECT_EQ(*pm->scan(a, a + 64 * ps_), want);
}

TEST_F(PagemapTest, PrivateFileMappingYieldsOnlyCopiedPages) {
  auto pm = Pagemap::open(pid_);
  ASSERT_TRUE(pm.ok());
  uint64_t f = layout_->file;
  auto cow = pages(f, {{3, 4}, {7, 9}});
  EXPECT_EQ(*pm->scan_ioctl(f, f + 16 * ps_, PageFilter::private_anon), cow);
  EXPECT_EQ(*pm->scan_read(f, f + 16 * ps_, PageFilter::private_anon), cow);
  auto all = pages(f, {{0, 16}});
  EXPECT_EQ(*pm->scan_ioctl(f, f + 16 * ps_, PageFilter::populated), all);
  EXPECT_EQ(*pm->scan_read(f, f + 16 * ps_, PageFilter::populated), all);
}

TEST_F(PagemapTest, IoctlContinuesWhenItsOutputBufferIsFull) {
  auto pm = Pagemap::open(pid_);
  ASSERT_TRUE(pm.ok());
  pm->set_ioctl_batch(1);  // one region per call: four regions need the walk_end continuation
  uint64_t a = layout_->anon;
  auto r = pm->scan_ioctl(a, a + 64 * ps_, PageFilter::private_anon);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, pages(a, {{0, 3}, {10, 11}, {20, 30}, {63, 64}}));
}

TEST_F(PagemapTest, LargeSparseMappingGivesCompactRanges) {
  auto pm = Pagemap::open(pid_);
  ASSERT_TRUE(pm.ok());
  uint64_t s = layout_->sparse;
  auto want = std::vector<PageRange>{{s, s + ps_}, {s + kGiB / 2, s + kGiB / 2 + ps_}};
  EXPECT_EQ(*pm->scan_ioctl(s, s + kGiB, PageFilter::private_anon), want);
  EXPECT_EQ(*pm->scan_read(s, s + kGiB, PageFilter::private_anon), want);
}

TEST(Pagemap, OpenNamesTheProcessWhenItIsGone) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  auto pm = Pagemap::open(pid);
  ASSERT_FALSE(pm.ok());
  EXPECT_EQ(pm.error().message, fmt::format("open /proc/{}/pagemap: No such process", pid));
}

TEST(Pagemap, AppendRangeMergesNeighbours) {
  std::vector<PageRange> r;
  append_range(r, 0x1000, 0x2000);
  append_range(r, 0x2000, 0x3000);
  append_range(r, 0x5000, 0x6000);
  EXPECT_EQ(r, (std::vector<PageRange>{{0x1000, 0x3000}, {0x5000, 0x6000}}));
}

// A parent's pages and its fork's: those neither wrote since the fork are the same frames;
// a page either side wrote (a copy), one the parent never touched (no frame) and one the child
// touched first are not.
TEST(Pagemap, SamePagesAreTheOnesForkStillShares) {
  const uint64_t ps = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  auto* area = static_cast<volatile char*>(
      mmap(nullptr, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  ASSERT_EQ(madvise(const_cast<char*>(area), 8 * ps, MADV_NOHUGEPAGE), 0);
  for (int p = 0; p < 6; ++p) area[p * ps] = static_cast<char>(p + 1);  // 6 and 7 untouched
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t kid = fork();
  if (kid == 0) {
    char c;
    area[1 * ps] = 'k';  // the child's own copy
    area[7 * ps] = 'k';  // the child's only
    (void)!write(done[1], "r", 1);
    (void)!read(go[0], &c, 1);
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(done[0], &c, 1), 1);
  area[4 * ps] = 'p';  // the parent's own copy
  auto start = reinterpret_cast<uint64_t>(area);
  auto mine = Pagemap::open(getpid());
  auto theirs = Pagemap::open(kid);
  ASSERT_TRUE(mine.ok() && theirs.ok());
  auto same = theirs->same_pages(*mine, start, start + 8 * ps);
  (void)!write(go[1], "g", 1);
  waitpid(kid, nullptr, 0);
  ASSERT_TRUE(same.ok()) << same.error().message;
  EXPECT_EQ(*same, (std::vector<PageRange>{{start, start + ps},
                                           {start + 2 * ps, start + 4 * ps},
                                           {start + 5 * ps, start + 6 * ps}}));
  munmap(const_cast<char*>(area), 8 * ps);
}

}  // namespace
}  // namespace ckpt::proc
