// A restore right after a dump may find the dumped process's PID still held by its zombie: its
// parent has not reaped it yet (PID 1 here reaps orphans only every 1.5-2 s). The restore waits
// for it, a bounded time, and says so.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <thread>

#include "test_process.hpp"

namespace e2e {
namespace {

class ZombiePidTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

// Dumps `p` (killing it) without reaping it: its PID stays held by its zombie, our child.
void dump_leaving_zombie(TestProcess& p) {
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  std::string state;
  for (int i = 0; i < 100 && state != "Z"; ++i) {
    sleep_for(10ms);
    state = status_field(p.pid(), "State").substr(0, 1);
  }
  ASSERT_EQ(state, "Z") << "pid " << p.pid() << " is not a zombie after the dump";
}

TEST_F(ZombiePidTest, RestoreWaitsForTheZombieHoldingItsPid) {
  TestProcess p({program_path("memory")});
  ASSERT_TRUE(p.wait_ready());
  dump_leaving_zombie(p);
  pid_t zombie = p.pid();
  std::thread reaper([zombie] {
    std::this_thread::sleep_for(1s);
    ::waitpid(zombie, nullptr, 0);
  });
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"}, 20s);
  reaper.join();
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_NE(r.err.find("is held by a zombie"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("waiting up to"), std::string::npos) << r.err;
  // The restored process is the dumped one, with its memory (it checks itself).
  EXPECT_TRUE(p.finish());
}

TEST_F(ZombiePidTest, RestoreGivesUpOnAZombieNobodyReaps) {
  TestProcess p({program_path("memory")});
  ASSERT_TRUE(p.wait_ready());
  dump_leaving_zombie(p);
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"}, 30s);
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_NE(r.err.find("pid " + std::to_string(p.pid()) + " is still held by a zombie"),
            std::string::npos)
      << r.err;
  // The zombie is untouched: still ours to reap.
  EXPECT_EQ(::waitpid(p.pid(), nullptr, WNOHANG), p.pid());
}

}  // namespace
}  // namespace e2e
