// A real program holding both ends of a pseudo-terminal: util-linux `script` runs a shell on a
// new terminal and copies its own input (here a FIFO the test writes to) to it. The shell reads
// lines from its terminal and appends them to a file; it must go on doing that after a dump and
// restore, through the recreated terminal.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_process.hpp"

namespace e2e {
namespace {

class PtyTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_F(PtyTest, ScriptWithAShellOnItsTerminalGoesOnAfterRestore) {
  TempDir dir;
  fs::path fifo = dir / "in", out = dir / "out";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Read-write: neither side waits for the other to open it.
  int input = open_or_die(fifo, O_RDWR);
  std::string loop = "echo started >> " + out.string() + "; while read l; do echo \"got:$l\" >> " +
                     out.string() + "; done";
  TestProcess p(
      {"/bin/sh", "-c",
       "echo READY; exec /usr/bin/script -q -c '" + loop + "' /dev/null <" + fifo.string()});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_for_text(out, "started", p.pid(), 10s)) << p.output();
  ASSERT_EQ(::write(input, "one\n", 4), 4);
  ASSERT_TRUE(wait_for_text(out, "got:one", p.pid(), 10s)) << read_text(out) << p.output();
  sleep_for(200ms);  // script copies the echo out at once; nothing stays queued
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  ASSERT_EQ(::write(input, "two\n", 4), 4);
  EXPECT_TRUE(wait_for_text(out, "got:two", p.pid(), 10s)) << read_text(out) << p.output();
  p.kill_now();
  ::close(input);
}

}  // namespace
}  // namespace e2e
