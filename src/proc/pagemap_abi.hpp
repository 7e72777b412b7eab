#pragma once
// The PAGEMAP_SCAN ABI from linux/fs.h (6.7), declared here because Debian 12's headers predate
// it. The layout is fixed by the kernel's ABI; `size` lets the kernel tell versions apart.
#include <sys/ioctl.h>

#include <cstdint>

namespace ckpt::proc::pagemap_abi {

struct PageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

struct PmScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};

// The most regions to ask for in one call. The kernel walks 2 MiB at a time into a buffer of at
// most 512 regions; given room for more, it walks again, and on Linux 6.18 then reports the end
// of the first walk as walk_end although it went further: a caller that goes on from walk_end
// gets regions again, out of order. With at most 512 there is one walk per call.
inline constexpr uint64_t kMaxRegions = 512;

inline constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
inline constexpr uint64_t kWpMatching = 1 << 0;  // flags: write-protect what matches
// Page categories.
inline constexpr uint64_t kIsWpAllowed = 1 << 0;
inline constexpr uint64_t kIsWritten = 1 << 1;
inline constexpr uint64_t kIsFile = 1 << 2;
inline constexpr uint64_t kIsPresent = 1 << 3;
inline constexpr uint64_t kIsSwapped = 1 << 4;
inline constexpr uint64_t kIsPfnZero = 1 << 5;

}  // namespace ckpt::proc::pagemap_abi
