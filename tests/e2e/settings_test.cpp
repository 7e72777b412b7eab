// Settings of unmodified Debian programs, set the way a user sets them (nice, taskset, choom,
// setpriv, prlimit), dumped, restored and checked from outside through /proc; and the restores
// that must be refused because they would hand a process more than the restorer has, or cannot
// give it back what it had.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "test_process.hpp"

namespace e2e {
namespace {

const std::string kSleep = "/usr/bin/sleep";

class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to set and drop these settings";
    become_subreaper();
  }

  // Waits until the tools that set things up have exec'd the program itself and it sleeps.
  static ::testing::AssertionResult wait_exec(pid_t pid, const std::string& exe) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      auto link = fs::read_symlink(fs::path("/proc") / std::to_string(pid) / "exe", ec);
      if (!ec && link == exe && status_field(pid, "State").rfind("S", 0) == 0)
        return ::testing::AssertionSuccess();
      sleep_for(5ms);
    }
    return ::testing::AssertionFailure() << "pid " << pid << " never became " << exe;
  }

  // Dump (killing it), restore, and no difference in what /proc shows.
  static void dump_restore_compare(TestProcess& p) {
    ProcSnapshot before = settled_snapshot(p.pid());
    ASSERT_TRUE(p.dump());
    ASSERT_TRUE(p.restore());
    for (auto& d : compare_settled(before, p.pid()))
      ADD_FAILURE() << "/proc of pid " << p.pid() << ": " << d;
  }

  static std::string proc_text(pid_t pid, const std::string& name) {
    auto text = read_text(fs::path("/proc") / std::to_string(pid) / name);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  static std::string stat_field(pid_t pid, size_t n) {
    auto text = read_text(fs::path("/proc") / std::to_string(pid) / "stat");
    std::istringstream in(text.substr(text.rfind(')') + 1));
    std::string f;
    for (size_t i = 3; i <= n && in >> f; ++i) {
    }
    return f;
  }

  // `ckpt restore` run through `wrapper...` (setpriv, prlimit): the restorer has less.
  static CkptResult restore_through(const TestProcess& p, std::vector<std::string> wrapper) {
    wrapper.insert(wrapper.end(), {ckpt_path(), "restore", "-D", p.store().string(), "--detach"});
    return run_command(wrapper);
  }

  static void expect_refused(const CkptResult& r, const TestProcess& p,
                             const std::vector<std::string>& words) {
    EXPECT_EQ(r.exit_code(), 1) << r.describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("pid " + std::to_string(p.pid())), std::string::npos) << r.err;
    for (auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << r.err;
    sleep_for(100ms);
    EXPECT_FALSE(alive(p.pid())) << "a process runs with the dumped pid";
  }
};

TEST_F(SettingsTest, NiceAffinityOomScoreAndTimerSlackOfADebianProgram) {
  TestProcess p({"/usr/bin/choom", "-n", "500", "--", "/usr/bin/nice", "-n", "7",
                 "/usr/bin/taskset", "-c", "0", kSleep, "600"});
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  // What `echo 1000000 > /proc/PID/timerslack_ns` does for a program that cannot be changed.
  {
    std::ofstream slack(fs::path("/proc") / std::to_string(p.pid()) / "timerslack_ns");
    slack << "1000000\n";
  }
  ASSERT_EQ(proc_text(p.pid(), "timerslack_ns"), "1000000");
  ASSERT_NO_FATAL_FAILURE(dump_restore_compare(p));
  // Not only unchanged: the values set, not defaults.
  EXPECT_EQ(stat_field(p.pid(), 19), "7");
  EXPECT_EQ(status_field(p.pid(), "Cpus_allowed_list"), "0");
  EXPECT_EQ(proc_text(p.pid(), "oom_score_adj"), "500");
  EXPECT_EQ(proc_text(p.pid(), "timerslack_ns"), "1000000");
  // Asleep again in its nanosleep once it has been scheduled (it may be runnable at first).
  EXPECT_TRUE(wait_exec(p.pid(), kSleep));
}

// The autogroup's nice value (what `echo 5 > /proc/PID/autogroup` sets for a whole session, as
// for a desktop's build job) comes back on a restored session leader, which gets a new autogroup;
// restored into the caller's session (--shell-job), it leaves the caller's autogroup alone.
TEST_F(SettingsTest, AutogroupNiceOfASessionLeaderComesBackAndTheCallersStaysAsItWas) {
  auto nice_of = [](pid_t pid) {
    std::string text = proc_text(pid, "autogroup");
    return text.substr(text.rfind(' ') + 1);
  };
  TestProcess p({"/usr/bin/setsid", kSleep, "600"});
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  ASSERT_EQ(::getsid(p.pid()), p.pid());
  {
    std::ofstream group(fs::path("/proc") / std::to_string(p.pid()) / "autogroup");
    group << "5\n";
  }
  ASSERT_EQ(nice_of(p.pid()), "5");
  std::string mine = proc_text(::getpid(), "autogroup");
  ASSERT_NO_FATAL_FAILURE(dump_restore_compare(p));
  EXPECT_EQ(::getsid(p.pid()), p.pid());
  EXPECT_EQ(nice_of(p.pid()), "5");
  EXPECT_NE(proc_text(p.pid(), "autogroup"), mine);

  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore({"--shell-job"}));
  EXPECT_EQ(::getsid(p.pid()), ::getsid(0));
  EXPECT_EQ(proc_text(p.pid(), "autogroup"), mine);
  EXPECT_EQ(proc_text(::getpid(), "autogroup"), mine);
}

TEST_F(SettingsTest, CapabilitiesDroppedWithSetprivStayDropped) {
  TestProcess p({"/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all", kSleep, "600"});
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  ASSERT_EQ(status_field(p.pid(), "Uid").substr(0, 1), "0");
  ASSERT_EQ(status_field(p.pid(), "CapBnd"), "0000000000000000");
  ASSERT_NO_FATAL_FAILURE(dump_restore_compare(p));
  // A uid-0 process without capabilities must not come back with the restorer's.
  for (auto* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(status_field(p.pid(), set), "0000000000000000") << set;
}

TEST_F(SettingsTest, ProcessOfAnotherUserWithItsOwnLimits) {
  // root lacks CAP_SYS_RESOURCE on the test machines, so prlimit() on a process of nobody fails:
  // the limits are read from /proc/PID/limits instead.
  TestProcess p({"/usr/bin/prlimit", "--nofile=256:512", "--core=0:4096", "--nproc=100:200", "--",
                 "/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", kSleep,
                 "600"});
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  ASSERT_EQ(status_field(p.pid(), "Uid"), "65534\t65534\t65534\t65534");
  ASSERT_NO_FATAL_FAILURE(dump_restore_compare(p));
  EXPECT_EQ(status_field(p.pid(), "Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(p.pid(), "Gid"), "65534\t65534\t65534\t65534");
  std::string limits = read_text(fs::path("/proc") / std::to_string(p.pid()) / "limits");
  EXPECT_NE(limits.find("Max open files            256                  512"), std::string::npos)
      << limits;
  EXPECT_NE(limits.find("Max processes             100                  200"), std::string::npos)
      << limits;
}

// Like a server's master running as root with workers as nobody (nginx, postgresql).
TEST_F(SettingsTest, AWorkerOfAnotherUserUnderARootParentKeepsItsUserAndLimits) {
  TestProcess p({"/bin/sh", "-c",
                 "/usr/bin/prlimit --nofile=300:600 -- /usr/bin/setpriv --reuid=nobody "
                 "--regid=nogroup --clear-groups /usr/bin/sleep 600 & wait"});
  pid_t worker = -1;
  for (int i = 0; i < 1000 && worker < 0; ++i) {
    auto kids = descendants(p.pid());
    if (!kids.empty()) worker = kids.front();
    sleep_for(5ms);
  }
  ASSERT_GT(worker, 0) << "the worker never started";
  ASSERT_TRUE(wait_exec(worker, kSleep));
  ProcSnapshot worker_before = settled_snapshot(worker);
  ASSERT_NO_FATAL_FAILURE(dump_restore_compare(p));
  for (auto& d : compare_settled(worker_before, worker))
    ADD_FAILURE() << "/proc of worker " << worker << ": " << d;
  EXPECT_EQ(status_field(worker, "Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(worker, "CapEff"), "0000000000000000");
  EXPECT_EQ(status_field(p.pid(), "Uid"), "0\t0\t0\t0");
  std::string limits = read_text(fs::path("/proc") / std::to_string(worker) / "limits");
  EXPECT_NE(limits.find("Max open files            300                  600"), std::string::npos)
      << limits;
}

// The dump pins every thread to its tracer's CPU while it is stopped (common/cpu_pin.hpp): each
// must have its own mask back once the program runs on, and be saved and restored with it.
TEST_F(SettingsTest, ThreadsKeepTheirOwnCpuMasksAcrossLeaveRunningDumpsAndARestore) {
  TestProcess p({program_path("thread_settings")});
  ASSERT_TRUE(p.wait_ready());
  ProcSnapshot before = settled_snapshot(p.pid());
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(p.dump({"--leave-running"}));
    for (auto& d : compare_settled(before, p.pid()))
      ADD_FAILURE() << "after leave-running dump " << round << ": " << d;
  }
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  for (auto& d : compare_settled(before, p.pid())) ADD_FAILURE() << "after restore: " << d;
  EXPECT_TRUE(p.finish());
}

TEST_F(SettingsTest, RestoreRefusesAHardLimitAboveTheRestorersOwn) {
  // Neither has CAP_SYS_RESOURCE, whatever root has on this machine.
  TestProcess p({"/usr/bin/setpriv", "--bounding-set=-sys_resource", "--", "/usr/bin/prlimit",
                 "--nofile=100:4096", "--", kSleep, "600"});
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  ASSERT_TRUE(p.dump());
  auto r = restore_through(p, {"/usr/bin/setpriv", "--bounding-set=-sys_resource", "--",
                               "/usr/bin/prlimit", "--nofile=64:1024", "--"});
  expect_refused(r, p, {"RLIMIT_NOFILE", "4096", "CAP_SYS_RESOURCE"});
}

TEST_F(SettingsTest, RestoreRefusesCapabilitiesTheRestorerLacks) {
  TestProcess p({kSleep, "600"});  // as root, with every capability root has here
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  ASSERT_TRUE(p.dump());
  auto r = restore_through(p, {"/usr/bin/setpriv", "--bounding-set=-net_admin", "--"});
  expect_refused(r, p, {"capabilities", "more than the restorer has"});
}

TEST_F(SettingsTest, RestoreFailsNamingARealtimePolicyItCannotGiveBack) {
  // SCHED_FIFO set while privileged; the program itself keeps no CAP_SYS_NICE (nor may the
  // restorer then), and RLIMIT_RTPRIO 0 lets no one without it have a realtime policy.
  TestProcess p({"/usr/bin/chrt", "-f", "10", "/usr/bin/setpriv", "--bounding-set=-sys_nice",
                 "--inh-caps=-all", "--", kSleep, "600"});
  ASSERT_TRUE(wait_exec(p.pid(), kSleep));
  ASSERT_EQ(stat_field(p.pid(), 41), "1");  // SCHED_FIFO
  ASSERT_TRUE(p.dump());
  auto r = restore_through(p, {"/usr/bin/setpriv", "--bounding-set=-sys_nice", "--"});
  expect_refused(r, p, {"thread " + std::to_string(p.pid()), "SCHED_FIFO priority 10"});
}

}  // namespace
}  // namespace e2e
