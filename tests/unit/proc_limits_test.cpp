// /proc/PID/limits, fed with fixed text and read live: the way ckpt reads the limits of a process
// of another user, which prlimit() refuses without CAP_SYS_RESOURCE.
#include <sys/resource.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "proc/limits.hpp"

namespace ckpt::proc {
namespace {

// As Linux 6.x prints it: padded columns, names with spaces, some limits without units.
const std::string kLimits =
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max file size             unlimited            unlimited            bytes     \n"
    "Max data size             unlimited            unlimited            bytes     \n"
    "Max stack size            8388608              unlimited            bytes     \n"
    "Max core file size        0                    4096                 bytes     \n"
    "Max resident set          unlimited            unlimited            bytes     \n"
    "Max processes             100                  200                  processes \n"
    "Max open files            256                  512                  files     \n"
    "Max locked memory         8388608              8388608              bytes     \n"
    "Max address space         unlimited            unlimited            bytes     \n"
    "Max file locks            unlimited            unlimited            locks     \n"
    "Max pending signals       31271                31271                signals   \n"
    "Max msgqueue size         819200               819200               bytes     \n"
    "Max nice priority         0                    0                    \n"
    "Max realtime priority     0                    0                    \n"
    "Max realtime timeout      unlimited            unlimited            us        \n";

TEST(ProcLimits, ParsesEveryLimitInRlimitOrder) {
  auto l = parse_limits(kLimits);
  ASSERT_TRUE(l.ok()) << l.error().message;
  ASSERT_EQ(l->size(), size_t{RLIM_NLIMITS});
  EXPECT_EQ((*l)[RLIMIT_CPU].cur, RLIM_INFINITY);
  EXPECT_EQ((*l)[RLIMIT_STACK].cur, 8388608u);
  EXPECT_EQ((*l)[RLIMIT_STACK].max, RLIM_INFINITY);
  EXPECT_EQ((*l)[RLIMIT_CORE].cur, 0u);
  EXPECT_EQ((*l)[RLIMIT_CORE].max, 4096u);
  EXPECT_EQ((*l)[RLIMIT_NPROC].cur, 100u);
  EXPECT_EQ((*l)[RLIMIT_NPROC].max, 200u);
  EXPECT_EQ((*l)[RLIMIT_NOFILE].cur, 256u);
  EXPECT_EQ((*l)[RLIMIT_NOFILE].max, 512u);
  EXPECT_EQ((*l)[RLIMIT_NICE].max, 0u);
  EXPECT_EQ((*l)[RLIMIT_RTTIME].cur, RLIM_INFINITY);
}

TEST(ProcLimits, RefusesAMissingLimitOrABadValue) {
  std::string missing = kLimits;
  missing.erase(missing.find("Max open files"), missing.find('\n', missing.find("Max open files")) -
                                                    missing.find("Max open files") + 1);
  auto l = parse_limits(missing);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("RLIMIT_NOFILE"), std::string::npos) << l.error().message;
  std::string bad = kLimits;
  bad.replace(bad.find("256 "), 3, "2x6");
  EXPECT_FALSE(parse_limits(bad).ok());
  std::string one_value = kLimits;
  one_value.replace(one_value.find("512                  files"), 25, "");
  EXPECT_FALSE(parse_limits(one_value).ok());
  EXPECT_FALSE(parse_limits("").ok());
}

TEST(ProcLimits, IgnoresLimitsThisCkptDoesNotKnow) {
  auto l = parse_limits(kLimits + "Max future thing          5                    6          \n");
  EXPECT_TRUE(l.ok());
}

TEST(ProcLimits, ReadsItsOwnLimitsAsGetrlimitSeesThem) {
  auto l = read_limits(::getpid());
  ASSERT_TRUE(l.ok()) << l.error().message;
  for (int r = 0; r < RLIM_NLIMITS; ++r) {
    rlimit own;
    ASSERT_EQ(::getrlimit(static_cast<__rlimit_resource>(r), &own), 0);
    EXPECT_EQ((*l)[r].cur, own.rlim_cur) << rlimit_name(r);
    EXPECT_EQ((*l)[r].max, own.rlim_max) << rlimit_name(r);
  }
}

TEST(ProcLimits, NamesLimitsLikeTheHeaders) {
  EXPECT_EQ(rlimit_name(RLIMIT_NOFILE), "RLIMIT_NOFILE");
  EXPECT_EQ(rlimit_name(RLIMIT_RTTIME), "RLIMIT_RTTIME");
  EXPECT_EQ(rlimit_name(99), "RLIMIT_99");
}

}  // namespace
}  // namespace ckpt::proc
