// The progress line's text: sizes, percentage, rate and time left, and what it shows before the
// total is known or when the engine's estimate falls short.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cli/progress.hpp"

namespace ckpt::cli {
namespace {

TEST(Progress, LineShowsBytesTotalPercentRateAndEta) {
  // 48 MiB of 192 MiB in 0.5 s: 96 MiB/s, 144 MiB left -> 1.5 s.
  EXPECT_EQ(format_progress("dump", 48ull << 20, 192ull << 20, 0.5),
            "dump   48.0 MiB / 192.0 MiB   25%  96.0 MiB/s  ETA 1.5s");
}

TEST(Progress, UnknownTotalShowsOnlyBytesAndRate) {
  EXPECT_EQ(format_progress("restore", 3 << 10, 0, 1.0), "restore    3.0 KiB / ?  3.0 KiB/s");
}

TEST(Progress, NothingDoneYetHasNoRateAndNoEta) {
  EXPECT_EQ(format_progress("dump", 0, 1 << 20, 0.6),
            "dump        0 B / 1.0 MiB    0%  ? B/s  ETA ?");
}

TEST(Progress, MoreThanTheEstimateNeverShowsOver100Percent) {
  EXPECT_EQ(format_progress("dump", 2 << 20, 1 << 20, 1.0),
            "dump    2.0 MiB / 2.0 MiB  100%  2.0 MiB/s  ETA 0.0s");
}

TEST(Progress, DurationsAndSizes) {
  EXPECT_EQ(human_duration(0.44), "0.4s");
  EXPECT_EQ(human_duration(42.4), "42s");
  EXPECT_EQ(human_duration(185), "3m05s");
  EXPECT_EQ(human_duration(7620), "2h07m");
  EXPECT_EQ(human_duration(-1), "?");
  EXPECT_EQ(human_bytes(1023), "1023 B");
  EXPECT_EQ(human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(human_bytes(3.0 * (1ull << 40)), "3.0 TiB");
}

TEST(Progress, SilentWhenNotATerminal) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  {
    Progress progress("dump", p[1]);
    EXPECT_FALSE(progress.callback()) << "a pipe is not a terminal: no callback at all";
    progress.update(1, 2);
  }
  char c;
  EXPECT_EQ(read(p[0], &c, 1), -1) << "nothing may be written to a pipe";
  close(p[0]);
  close(p[1]);
}

TEST(Progress, DrawsInPlaceAfterTheQuietStartAndClears) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  {
    Progress progress("dump", p[1], /*force=*/true);
    auto cb = progress.callback();
    ASSERT_TRUE(cb);
    cb(1, 4);  // within the first half second: nothing
    usleep(600 * 1000);
    cb(2, 4);
    cb(3, 4);  // within 100 ms of the previous draw: skipped
  }
  char buf[512];
  ssize_t n = read(p[0], buf, sizeof buf);
  ASSERT_GT(n, 0);
  std::string out(buf, static_cast<size_t>(n));
  EXPECT_EQ(out.find("\rdump "), 0u) << out;
  EXPECT_NE(out.find(" 50% "), std::string::npos) << out;
  EXPECT_EQ(out.find(" 25% "), std::string::npos) << out;
  EXPECT_EQ(out.find(" 75% "), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\x1b[K")) << "the line is cleared at the end";
  close(p[0]);
  close(p[1]);
}

}  // namespace
}  // namespace ckpt::cli
