// A real double-forking daemon (issue 11, point 3): `start-stop-daemon --background` forks, calls
// setsid() and forks again, so the program it starts lives in a session and group whose leader
// has exited. Dumped and restored, it must come back in a session and group of the same IDs
// (made again by helper processes that are gone afterwards), and go on running.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e_util.hpp"

namespace e2e {
namespace {

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      EXPECT_TRUE(reap_all({pid_}, {}));
    }
  }
  TempDir dir_;
  pid_t pid_ = -1;
};

TEST_F(DaemonTest, StartStopDaemonBackgroundKeepsItsSessionAndGroup) {
  fs::path pidfile = dir_ / "daemon.pid";
  auto started =
      run_command({"/sbin/start-stop-daemon", "--start", "--background", "--make-pidfile",
                   "--pidfile", pidfile.string(), "--exec", "/bin/sleep", "--", "1000"});
  ASSERT_EQ(started.exit_code(), 0) << started.describe();
  for (int i = 0; i < 500 && read_text(pidfile).empty(); ++i) sleep_for(10ms);
  pid_ = std::atoi(read_text(pidfile).c_str());
  ASSERT_GT(pid_, 0);
  pid_t sid = ::getsid(pid_), pgid = ::getpgid(pid_);
  ASSERT_NE(sid, pid_) << "start-stop-daemon left the program leading its session";
  // The middle process, the session's leader, is gone (reaped here, the child subreaper).
  for (int i = 0; i < 500 && (alive(sid) || ::waitpid(sid, nullptr, WNOHANG) == 0); ++i)
    sleep_for(10ms);
  ASSERT_FALSE(alive(sid)) << "the session leader " << sid << " is still there";

  auto dumped = run_ckpt({"dump", "-t", std::to_string(pid_), "-D", (dir_ / "store").string()});
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  ASSERT_TRUE(reap_all({pid_}, {}));
  auto restored = run_ckpt({"restore", "-D", (dir_ / "store").string(), "--detach"});
  ASSERT_EQ(restored.exit_code(), 0) << restored.describe();
  EXPECT_EQ(::getsid(pid_), sid);
  EXPECT_EQ(::getpgid(pid_), pgid);
  EXPECT_FALSE(alive(sid)) << "the helper that made session " << sid << " is still there";
  // Just let go, it may still be on its way back into nanosleep.
  for (int i = 0; i < 500 && status_field(pid_, "State").substr(0, 1) != "S"; ++i) sleep_for(10ms);
  EXPECT_EQ(status_field(pid_, "State").substr(0, 1), "S") << "the daemon is not sleeping";
}

}  // namespace
}  // namespace e2e
