// The checks behind the options: CRIU's --inherit-fd syntax, PIDs, finite ranges.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cli/options.hpp"

namespace ckpt::cli {
namespace {

TEST(InheritFd, CriuSyntaxIsParsed) {
  auto f = parse_inherit_fd("fd[7]:pipe:[12345]");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->fd, 7);
  EXPECT_EQ(f->key, "pipe:[12345]");
  f = parse_inherit_fd("fd[0]:var/log/app.log");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->fd, 0);
  EXPECT_EQ(f->key, "var/log/app.log");
  f = parse_inherit_fd("fd[12]:socket:[99]");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->key, "socket:[99]");
}

TEST(InheritFd, BadSpellingsAreOneClearError) {
  for (const char* text :
       {"", "7:pipe:[1]", "fd[]:pipe:[1]", "fd[-1]:pipe:[1]", "fd[x]:pipe:[1]", "fd[7]",
        "fd[7]:", "fd[99999999999999999999]:pipe:[1]", "fd[7]:pipe:[]", "fd[7]:pipe:[12a]",
        "fd[7]:pipe:12", "fd[7]:socket:[99999999999999999999999]", "fd[7]pipe:[1]"}) {
    auto f = parse_inherit_fd(text);
    ASSERT_FALSE(f.ok()) << text;
    EXPECT_NE(f.error().message.find("--inherit-fd"), std::string::npos) << f.error().message;
    EXPECT_EQ(f.error().message.find('\n'), std::string::npos);
  }
}

TEST(InheritFd, TheFdMustBeOpenAndOfTheKeysKind) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_TRUE(check_inherit_fd({p[0], "pipe:[1]"}).ok());
  EXPECT_TRUE(check_inherit_fd({p[0], "tmp/file"}).ok());
  auto st = check_inherit_fd({p[0], "socket:[1]"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("is not a socket"), std::string::npos) << st.error().message;
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  EXPECT_TRUE(check_inherit_fd({s[0], "socket:[5]"}).ok());
  st = check_inherit_fd({s[0], "pipe:[5]"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("is not a pipe"), std::string::npos);
  close(p[1]);
  st = check_inherit_fd({p[1], "pipe:[1]"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("is not open in ckpt"), std::string::npos);
  for (int fd : {p[0], s[0], s[1]}) close(fd);
}

TEST(Pid, OnlyDecimalPidsInTheKernelsRange) {
  EXPECT_EQ(parse_pid("1"), 1);
  EXPECT_EQ(parse_pid("4194304"), 4194304);
  for (const char* bad :
       {"", "0", "-1", "4194305", "99999999999999", "1e3", " 12", "12 ", "+5", "0x10", "nan"})
    EXPECT_FALSE(parse_pid(bad)) << bad;
  EXPECT_FALSE(parse_pid(std::string(300, '9')));
}

TEST(FiniteRange, RefusesNanInfinityOverflowAndOutOfRange) {
  auto v = finite_range(0, 1e9);
  for (std::string ok : {"0", "0.5", "60", "1e9", "1e3"}) EXPECT_EQ(v(ok), "") << ok;
  const std::vector<std::string> bad_values = {"nan", "NaN",   "inf",   "-inf",
                                               "-1",  "1e308", "1e309", "1e9.1",
                                               "",    "abc",   "5s",    std::string(300, '9')};
  for (std::string bad : bad_values) EXPECT_NE(v(bad), "") << bad;
}

}  // namespace
}  // namespace ckpt::cli
