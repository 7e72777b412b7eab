// No privilege gain through ckpt: an unprivileged user can neither dump another user's process
// nor restore an image whose credentials it could not have. Both fail with one line and harm
// nothing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_process.hpp"

namespace e2e {
namespace {

constexpr const char* kNobody = "65534";

// `ckpt ARGS...` as user and group nobody, with no supplementary groups and no capabilities.
CkptResult run_ckpt_as_nobody(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid", kNobody,
                                   "--regid",          kNobody,   "--clear-groups",
                                   "--inh-caps=-all",  "--",      ckpt_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

class PrivilegeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to have another user at hand";
    if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv is not installed";
    become_subreaper();
  }
};

TEST_F(PrivilegeTest, DumpOfAnotherUsersProcessFailsAndHarmsNothing) {
  TestProcess p({program_path("syscall_pause")});
  ASSERT_TRUE(p.wait_ready());
  // Writable by nobody (sticky like /tmp, as a store may not be made where another user could
  // replace it), so that only the target's owner is the obstacle.
  TempDir open_dir;
  ASSERT_EQ(::chmod(open_dir.path().c_str(), 01777), 0);
  auto store = open_dir / "store";
  auto r = run_ckpt_as_nobody({"dump", "-t", std::to_string(p.pid()), "-D", store.string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(std::to_string(p.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ermission"), std::string::npos) << r.err;
  sleep_for(100ms);
  ASSERT_TRUE(left_running_untraced(p.pid()));
  // The process is still whole: it answers its check.
  EXPECT_TRUE(p.finish());
}

TEST_F(PrivilegeTest, RestoreOfAnotherUsersImageIsRefused) {
  TestProcess p({program_path("syscall_pause")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  // Let nobody read the image, so that only the credentials in it stop the restore.
  ASSERT_EQ(::chmod(p.dir().c_str(), 0755), 0);
  for (auto& e : fs::recursive_directory_iterator(p.store()))
    ::chmod(e.path().c_str(), e.is_directory() ? 0777 : 0666);
  ASSERT_EQ(::chmod(p.store().c_str(), 0777), 0);
  p.kill_now();
  // --trust-store: a store root made writable for all is otherwise refused before its
  // credentials are even read (StoreSecurity tests); here only the credentials may stop it.
  auto r = run_ckpt_as_nobody({"restore", "-D", p.store().string(), "--detach", "--trust-store"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("only root may restore it"), std::string::npos) << r.err;
  sleep_for(100ms);
  EXPECT_FALSE(alive(p.pid())) << "a process runs with the dumped pid";
}

}  // namespace
}  // namespace e2e
