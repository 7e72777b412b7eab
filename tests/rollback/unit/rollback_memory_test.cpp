// The rollback helper's memory logic on its own: page ranges, the mapping plan, and the page
// queries (userfaultfd write-protection and PAGEMAP_SCAN) against this very process.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "app/rollback_maps.hpp"
#include "app/rollback_memory.hpp"
#include "common/scoped_fd.hpp"
#include "proc/maps.hpp"

namespace ckpt::rollback {
namespace {

constexpr uint64_t P = 4096;

RangeSet rs(std::initializer_list<std::pair<uint64_t, uint64_t>> pages) {
  RangeSet out;
  for (auto [a, b] : pages) out.push_back({a * P, b * P});
  return out;
}

TEST(RollbackRanges, UnionIntersectSubtract) {
  RangeSet a = rs({{0, 4}, {10, 12}});
  RangeSet b = rs({{2, 6}, {11, 20}});
  EXPECT_EQ(range_union(a, b), rs({{0, 6}, {10, 20}}));
  EXPECT_EQ(range_intersect(a, b), rs({{2, 4}, {11, 12}}));
  EXPECT_EQ(range_subtract(a, b), rs({{0, 2}, {10, 11}}));
  EXPECT_EQ(range_subtract(b, a), rs({{4, 6}, {12, 20}}));
  EXPECT_EQ(range_bytes(a), 6 * P);
  EXPECT_EQ(range_subtract(a, a), RangeSet{});
  EXPECT_EQ(range_intersect(a, {}), RangeSet{});
}

TEST(RollbackRanges, NormalizeSortsAndMerges) {
  EXPECT_EQ(normalize({{8 * P, 9 * P}, {0, P}, {P, 2 * P}, {5 * P, 5 * P}, {1 * P, 3 * P}}),
            rs({{0, 3}, {8, 9}}));
}

proc::MapEntry anon(uint64_t s, uint64_t e, int prot = PROT_READ | PROT_WRITE) {
  proc::MapEntry m;
  m.start = s * P;
  m.end = e * P;
  m.prot = prot;
  return m;
}

proc::MapEntry file(uint64_t s, uint64_t e, uint64_t inode, uint64_t offset_pages) {
  proc::MapEntry m = anon(s, e, PROT_READ);
  m.kind = proc::MapKind::file;
  m.inode = inode;
  m.dev_major = 8;
  m.offset = offset_pages * P;
  m.path = "/lib/x.so";
  return m;
}

TEST(RollbackPlan, NewMappingIsUnmappedAndRemovedOneComesBack) {
  auto plan = plan_mappings({anon(0, 10)}, {anon(0, 4), anon(20, 30)});
  EXPECT_EQ(plan.unmap, rs({{20, 30}}));
  ASSERT_EQ(plan.remap.size(), 1u);
  EXPECT_EQ(plan.remap[0].start, 4 * P);
  EXPECT_EQ(plan.remap[0].end, 10 * P);
  EXPECT_EQ(plan.same_private, rs({{0, 4}}));
  EXPECT_TRUE(plan.protect.empty());
}

TEST(RollbackPlan, ProtectionChangeIsUndone) {
  auto plan = plan_mappings({anon(0, 10)}, {anon(0, 3), anon(3, 5, PROT_READ), anon(5, 10)});
  ASSERT_EQ(plan.protect.size(), 1u);
  EXPECT_EQ(plan.protect[0].start, 3 * P);
  EXPECT_EQ(plan.protect[0].end, 5 * P);
  EXPECT_EQ(plan.protect[0].prot, PROT_READ | PROT_WRITE);
  EXPECT_EQ(plan.same_private, rs({{0, 10}}));
}

TEST(RollbackPlan, OtherFileOrOffsetIsReplaced) {
  // Same file at the same place but another offset: not the same mapping.
  auto plan = plan_mappings({file(0, 4, 7, 0)}, {file(0, 4, 7, 1)});
  EXPECT_EQ(plan.unmap, rs({{0, 4}}));
  ASSERT_EQ(plan.remap.size(), 1u);
  // The same file, split differently: the same mapping page by page.
  plan = plan_mappings({file(0, 4, 7, 0)}, {file(0, 2, 7, 0), file(2, 4, 7, 2)});
  EXPECT_TRUE(plan.unmap.empty());
  EXPECT_TRUE(plan.remap.empty());
  EXPECT_EQ(plan.same_private, rs({{0, 4}}));
}

TEST(RollbackPlan, SharedMemoryIsNotCopiedAndSpecialMappingsAreLeftAlone) {
  proc::MapEntry shm = anon(0, 4);
  shm.shared = true;
  shm.inode = 99;
  proc::MapEntry vdso = anon(10, 12, PROT_READ | PROT_EXEC);
  vdso.kind = proc::MapKind::vdso;
  auto plan = plan_mappings({shm, vdso}, {shm});
  EXPECT_TRUE(plan.same_private.empty());
  EXPECT_TRUE(plan.unmap.empty() && plan.remap.empty());
  proc::MapEntry other = shm;
  other.inode = 100;  // another shared object at the same place
  plan = plan_mappings({shm}, {other});
  EXPECT_EQ(plan.unmap, rs({{0, 4}}));
  ASSERT_EQ(plan.remap.size(), 1u);
}

// Write tracking as the helper uses it, on a mapping of this process.
class Tracking : public ::testing::Test {
 protected:
  void SetUp() override {
    uffd_.reset(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1)));
    ASSERT_TRUE(uffd_) << "userfaultfd: " << strerror(errno);
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = 1 << 15;  // UFFD_FEATURE_WP_ASYNC
    ASSERT_EQ(ioctl(uffd_.get(), UFFDIO_API, &api), 0) << strerror(errno);
    mem_ = static_cast<char*>(
        mmap(nullptr, 16 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    base_ = reinterpret_cast<uint64_t>(mem_);
    auto maps = proc::read_maps(getpid());
    ASSERT_TRUE(maps.ok());
    maps_ = *maps;
    auto sc = PageScanner::open(getpid());
    ASSERT_TRUE(sc.ok());
    scanner_.emplace(std::move(*sc));
  }
  void TearDown() override { munmap(mem_, 16 * P); }
  RangeSet pages(std::initializer_list<std::pair<uint64_t, uint64_t>> p) {
    RangeSet out;
    for (auto [a, b] : p) out.push_back({base_ + a * P, base_ + b * P});
    return out;
  }
  RangeSet all() { return pages({{0, 16}}); }

  ScopedFd uffd_;
  char* mem_ = nullptr;
  uint64_t base_ = 0;
  std::vector<proc::MapEntry> maps_;
  std::optional<PageScanner> scanner_;
};

TEST_F(Tracking, OnlyPagesWrittenSinceTheLastResetAreReported) {
  for (int i = 0; i < 8; ++i) mem_[i * P] = 1;
  auto loose = scanner_->unprotected(all());
  ASSERT_TRUE(loose.ok());
  EXPECT_EQ(*loose, all());
  EXPECT_EQ(register_for_tracking(uffd_.get(), all(), maps_), 0u);
  EXPECT_EQ(*scanner_->unprotected(all()), RangeSet{});
  EXPECT_EQ(*scanner_->take_written(all()), pages({{0, 8}}));  // all new to the tracking
  EXPECT_EQ(*scanner_->take_written(all()), RangeSet{});
  mem_[2 * P] = 2;
  mem_[12 * P] = 2;  // a page that had no data
  EXPECT_EQ(*scanner_->take_written(all()), pages({{2, 3}, {12, 13}}));
  EXPECT_EQ(*scanner_->take_written(all()), RangeSet{});
}

// (A page only read since would be the shared zero page on most kernels, but this one gives
// anonymous reads pages of their own; either way it is restored correctly, so it is not tested.)
TEST_F(Tracking, DroppedPagesHaveNoDataOfTheirOwn) {
  for (int i = 0; i < 8; ++i) mem_[i * P] = 1;
  ASSERT_EQ(register_for_tracking(uffd_.get(), all(), maps_), 0u);
  ASSERT_TRUE(scanner_->take_written(all()).ok());
  ASSERT_EQ(madvise(mem_ + 4 * P, 2 * P, MADV_DONTNEED), 0);
  mem_[1 * P] = 3;
  RangeSet written, own;
  ASSERT_TRUE(scanner_->own_data_split(all(), maps_, &written, &own).ok());
  EXPECT_EQ(own, pages({{0, 4}, {6, 8}}));
  EXPECT_EQ(written, pages({{1, 2}}));
}

// What an incremental dump's freeze does in one pass (write_tracking::renew): the pages with
// data of their own, which of them were written, and those protected again.
TEST_F(Tracking, OneSplitFindsOwnAndWrittenPagesAndProtectsTheWrittenAgain) {
  for (int i = 0; i < 8; ++i) mem_[i * P] = 1;
  ASSERT_EQ(register_for_tracking(uffd_.get(), all(), maps_), 0u);
  ASSERT_TRUE(scanner_->take_written(all()).ok());
  mem_[3 * P] = 2;
  mem_[10 * P] = 2;  // a page that had no data
  RangeSet written, own;
  ASSERT_TRUE(scanner_->own_data_split(all(), maps_, &written, &own, true).ok());
  EXPECT_EQ(own, pages({{0, 8}, {10, 11}}));
  EXPECT_EQ(written, pages({{3, 4}, {10, 11}}));
  EXPECT_EQ(*scanner_->take_written(all()), RangeSet{});  // protected again by the split
  mem_[3 * P] = 4;
  ASSERT_TRUE(scanner_->own_data_split(all(), maps_, &written, &own, false).ok());
  EXPECT_EQ(written, pages({{3, 4}}));
  ASSERT_TRUE(scanner_->own_data_split(all(), maps_, &written, &own, false).ok());
  EXPECT_EQ(written, pages({{3, 4}}));  // without `protect`, still written
}

}  // namespace
}  // namespace ckpt::rollback
