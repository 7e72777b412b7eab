// Restoring on a kernel whose vdso differs from the image's: the running kernel's vdso goes
// elsewhere and the old address holds a proxy whose functions jump to it. --force-vdso-proxy
// takes that path on this kernel; the program then keeps calling clock_gettime & co. through
// the pointers libc found at its start, and compares them with the system calls.
#include <gtest/gtest.h>

#include <sstream>

#include "test_process.hpp"

namespace e2e {
namespace {

// The start of the mapping named `name` ("[vdso]") in /proc/PID/maps, 0 when none.
uint64_t mapping_start(pid_t pid, const std::string& name) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/maps"));
  for (std::string line; std::getline(in, line);)
    if (line.size() >= name.size() &&
        line.compare(line.size() - name.size(), name.size(), name) == 0)
      return std::stoull(line.substr(0, line.find('-')), nullptr, 16);
  return 0;
}

// The permissions of the mapping starting at `start`.
std::string perms_at(pid_t pid, uint64_t start) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/maps"));
  for (std::string line; std::getline(in, line);)
    if (std::stoull(line.substr(0, line.find('-')), nullptr, 16) == start)
      return line.substr(line.find(' ') + 1, 4);
  return "";
}

TEST(VdsoProxy, ProcessKeepsCallingTheVdsoThroughTheProxy) {
  become_subreaper();
  TestProcess p({program_path("vdso_clock")});
  ASSERT_TRUE(p.wait_ready());
  uint64_t old_vdso = mapping_start(p.pid(), "[vdso]");
  ASSERT_NE(old_vdso, 0u);
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore({"--force-vdso-proxy"}));
  uint64_t new_vdso = mapping_start(p.pid(), "[vdso]");
  EXPECT_NE(new_vdso, 0u);
  EXPECT_NE(new_vdso, old_vdso) << "the kernel's vdso stayed where the proxy belongs";
  EXPECT_EQ(perms_at(p.pid(), old_vdso), "r-xp") << "no proxy at the old vdso address";
  EXPECT_TRUE(p.finish());
}

// A thread caught inside the vdso's code is stepped out of it by the dump: through a proxy,
// where the old vdso's data pages are gone, it would fault.
TEST(VdsoProxy, TenCyclesWithAThreadLivingInTheVdso) {
  become_subreaper();
  TestProcess p({program_path("vdso_clock")});
  ASSERT_TRUE(p.wait_ready());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(p.dump()) << "cycle " << i;
    ASSERT_TRUE(p.restore({"--force-vdso-proxy"})) << "cycle " << i;
  }
  EXPECT_TRUE(p.finish());
}

// Stepped slower than the kernel updates the clock (every tick), a thread in the vdso's clock
// read never gets out of its retry loop by steps: the dump runs it to where the read returns
// instead, and the program, restored through the proxy, goes on. Without that the dump loops
// until the test gives up on it.
TEST(VdsoProxy, AThreadSteppedSlowerThanTheClockUpdatesIsRunOutOfTheVdso) {
  become_subreaper();
  TestProcess p({program_path("vdso_clock")});
  ASSERT_TRUE(p.wait_ready());
  std::vector<std::string> dump = {
      ckpt_path(),        "dump",           "-t", std::to_string(p.pid()), "-D",
      p.store().string(), "--leave-running"};
  bool ran_out = false;
  // The spinning thread is in the vdso at almost every dump; a few tries make it certain.
  for (int i = 0; i < 10 && !ran_out; ++i) {
    auto r = run_command(dump, {"CKPT_FAULT_SLOW_STEP_US=2000", "CKPT_LOG=dump=debug"}, 60s);
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    ran_out = r.err.find("loops in the vdso") != std::string::npos;
  }
  EXPECT_TRUE(ran_out) << "no dump found a thread looping in the vdso";
  p.kill_now();
  ASSERT_TRUE(p.restore({"--force-vdso-proxy"}));
  EXPECT_TRUE(p.finish());
}

TEST(VdsoProxy, WithoutProxyTheVdsoGoesBackToItsAddress) {
  become_subreaper();
  TestProcess p({program_path("vdso_clock")});
  ASSERT_TRUE(p.wait_ready());
  uint64_t old_vdso = mapping_start(p.pid(), "[vdso]");
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  EXPECT_EQ(mapping_start(p.pid(), "[vdso]"), old_vdso);
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
