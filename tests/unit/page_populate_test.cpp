// memory::part(): the populate calls of a restore cut into pieces that the copy follows while
// the puppet runs them (resources/page_populate.hpp).
#include <sys/mman.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "resources/page_populate.hpp"

namespace ckpt::memory {
namespace {

ptrace::BatchCall populate(uint64_t start, uint64_t len) {
  return {"madvise(MADV_POPULATE_WRITE)", SYS_madvise, {start, len, MADV_POPULATE_WRITE}, false};
}

// Every piece must be one madvise() takes (a page-aligned start: once, pieces of 1 GiB / 31 were
// not, every piece but the first failed unseen and the copy faulted the pages in itself), and
// the pieces must cover the big calls exactly, in order, within the table's room.
TEST(PagePopulate, BigCallsArePartedIntoPiecesOfWholeHugePagesThatCoverThemExactly) {
  constexpr uint64_t kMiB = 1 << 20;
  const uint64_t heap = 0x7f0000000000;
  for (size_t room : {62, 20, 8}) {
    std::vector<ptrace::BatchCall> calls = {populate(0x400000, 0x3000),
                                            populate(heap, 1024 * kMiB + 0x5000),
                                            populate(heap + 2048 * kMiB, 4 * kMiB)};
    Parted parted = part(calls, room);
    ASSERT_FALSE(parted.pieces.empty()) << room;
    EXPECT_LE(parted.pieces.size(), room);
    ASSERT_EQ(parted.before.size(), 2u) << "the small calls run first";
    uint64_t at = heap;
    for (auto& p : parted.pieces) {
      EXPECT_EQ(p.args[0], at) << room;
      EXPECT_EQ(p.args[0] % (2 * kMiB), 0u) << "piece at " << std::hex << p.args[0];
      EXPECT_EQ(p.args[2], uint64_t{MADV_POPULATE_WRITE});
      at += p.args[1];
    }
    EXPECT_EQ(at, heap + 1024 * kMiB + 0x5000) << room;
  }
}

TEST(PagePopulate, SmallOrUnorderedCallsAreNotParted) {
  constexpr uint64_t kMiB = 1 << 20;
  std::vector<ptrace::BatchCall> small = {populate(0x10000000, 16 * kMiB),
                                          populate(0x20000000, 7 * kMiB)};
  EXPECT_TRUE(part(small, 62).pieces.empty());
  std::vector<ptrace::BatchCall> unordered = {populate(0x80000000, 512 * kMiB),
                                              populate(0x10000000, 512 * kMiB)};
  Parted parted = part(unordered, 62);
  EXPECT_TRUE(parted.pieces.empty());
  EXPECT_EQ(parted.before.size(), 2u);
}

}  // namespace
}  // namespace ckpt::memory
