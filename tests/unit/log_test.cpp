// The log machinery: spec checking, levels per module, -v, and the kept log (capture), which
// receives debug lines whatever the stream's level.
#include <fcntl.h>
#include <unistd.h>

#include <regex>

#include <gtest/gtest.h>

#include "common/log.hpp"

namespace ckpt::log {
namespace {

TEST(Log, SpecsAreChecked) {
  for (const char* good : {"debug", "off", "info,ptrace=debug", "restore=error,image=warn,warn"})
    EXPECT_TRUE(check_spec(good).ok()) << good;
  for (const char* bad : {"", "zzz=nonsense", "nonsense", "restore=", "=debug", "debug,,info",
                          "zzz=debug", "Debug", "restore=debug,ptrace=loud", "restore:debug"}) {
    auto st = check_spec(bad);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().message.find('\n'), std::string::npos);
  }
  auto st = check_spec("zzz=nonsense");
  EXPECT_NE(st.error().message.find("unknown module 'zzz'"), std::string::npos)
      << st.error().message;
  st = check_spec("restore=loud");
  EXPECT_NE(st.error().message.find("unknown level 'loud' (levels: debug, info, warn, error, off)"),
            std::string::npos)
      << st.error().message;
}

TEST(Log, AWrongSpecChangesNothing) {
  ASSERT_TRUE(configure("warn,memory=warn").ok());
  EXPECT_FALSE(configure("memory=debug,zzz=debug").ok());
  EXPECT_FALSE(enabled("memory", Level::debug)) << "the good half of a bad spec is not applied";
}

TEST(Log, LevelsPerModuleAndVerbosity) {
  ASSERT_TRUE(configure("warn,memory=debug,image=error").ok());
  EXPECT_TRUE(enabled("memory", Level::debug));
  EXPECT_FALSE(enabled("ptrace", Level::info));
  EXPECT_FALSE(enabled("image", Level::warn));
  set_verbosity(1);
  EXPECT_TRUE(enabled("ptrace", Level::info));
  EXPECT_FALSE(enabled("ptrace", Level::debug));
  EXPECT_FALSE(enabled("image", Level::warn)) << "a module's own level stays";
  set_verbosity(2);
  EXPECT_TRUE(enabled("ptrace", Level::debug));
  ASSERT_TRUE(configure("warn,memory=warn,image=warn").ok());
  EXPECT_FALSE(enabled("ptrace", Level::debug));
}

TEST(Log, CaptureTakesDebugLinesTheStreamDoesNotShow) {
  ASSERT_TRUE(configure("error").ok());
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  int out[2];
  ASSERT_EQ(pipe2(out, O_NONBLOCK), 0);
  set_output(out[1]);
  set_capture(p[1], Level::debug);
  debug("restore", "step {} of {}", 3, 7);
  set_capture(-1);
  debug("restore", "not captured");
  set_output(-1);
  ASSERT_TRUE(configure("warn").ok());
  char buf[512];
  ssize_t n = read(p[0], buf, sizeof buf);
  ASSERT_GT(n, 0);
  std::string line(buf, static_cast<size_t>(n));
  EXPECT_TRUE(std::regex_match(
      line, std::regex(R"(ckpt\[(\d+)/(\d+)\] \d+\.\d{6} debug restore: step 3 of 7\n)")))
      << line;
  EXPECT_EQ(read(out[0], buf, sizeof buf), -1) << "the stream's level is error: nothing there";
  for (int fd : {p[0], p[1], out[0], out[1]}) close(fd);
}

TEST(Log, LineCarriesPidAndTid) {
  std::string line = format_line("image", Level::warn, "x");
  std::smatch m;
  ASSERT_TRUE(
      std::regex_match(line, m, std::regex(R"(ckpt\[(\d+)/(\d+)\] \d+\.\d{6} warn image: x\n)")));
  EXPECT_EQ(std::stoi(m[1]), getpid());
  EXPECT_EQ(std::stoi(m[2]), gettid());
}

}  // namespace
}  // namespace ckpt::log
