// Seccomp and deleted files beyond the ProgramTest cases: a process whose filter kills it on the
// very calls ckpt injects survives a dump with --leave-running (and then still has its filters),
// and the deleted files ckpt refuses are refused with a message naming the fd and the path.
#include <gtest/gtest.h>

#include "test_process.hpp"

namespace e2e {
namespace {

class SeccompTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_F(SeccompTest, KillingFilterSurvivesLeaveRunningDumpAndRestore) {
  TestProcess p({program_path("seccomp_filter")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  sleep_for(100ms);
  ASSERT_TRUE(alive(p.pid())) << "the filter killed the process during the dump\n" << p.output();
  EXPECT_EQ(status_field(p.pid(), "TracerPid"), "0");
  EXPECT_EQ(status_field(p.pid(), "Seccomp"), "2");
  // The original checks its filters still act (getppid denied, brk kills a child)...
  ASSERT_TRUE(p.finish());
  // ...and so does the process restored from the image (its stdout grew since the dump).
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  EXPECT_EQ(status_field(p.pid(), "Seccomp_filters"), "2");
  EXPECT_TRUE(p.finish());
}

void expect_refused(TestProcess& p, const std::vector<std::string>& words) {
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  for (auto& w : words)
    EXPECT_NE(r.err.find(w), std::string::npos) << "no '" << w << "' in " << r.err;
  sleep_for(100ms);
  EXPECT_TRUE(left_running_untraced(p.pid(), false));
}

// A removed directory open as an fd or the cwd is restored (deleted_dir.c); a removed root
// cannot be: chroot() needs a path.
TEST_F(SeccompTest, RemovedRootDirectoryIsRefusedNamingIt) {
  TestProcess p({"/usr/bin/python3", "-c",
                 "import os, time\ntop = os.environ['E2E_DIR']\nos.mkdir(top + '/gone root')\n"
                 "up = os.open(top, os.O_RDONLY)\nos.chroot(top + '/gone root')\n"
                 "os.rmdir('gone root', dir_fd=up)\nos.close(up)\n"
                 "print('READY', flush=True)\ntime.sleep(1000)\n"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, {"root directory", (p.dir() / "gone root").string(), "removed"});
}

// A deleted executable is saved like any deleted file (the deleted_exe program restores one),
// so one above the size limit is refused, naming it, before the program is killed.
TEST_F(SeccompTest, HugeDeletedExecutableIsRefusedNamingIt) {
  TempDir dir;
  auto exe = dir / "shell copy";
  fs::copy_file("/bin/sh", exe);
  fs::permissions(exe, fs::perms::owner_all);
  fs::resize_file(exe, 300 << 20);  // sparse: the loader reads only the ELF parts
  TestProcess p(
      {exe.string(), "-c", "rm \"$0\"; echo READY; while :; do sleep 1; done", exe.string()});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, {"executable", exe.string(), "deleted", "at most"});
}

TEST_F(SeccompTest, HugeDeletedFileIsRefusedNamingFdAndPath) {
  // Sparse: costs no disk, but its size is above the limit for deleted files.
  TestProcess p({"/usr/bin/python3", "-c",
                 "import os, time\nf = os.environ['E2E_DIR'] + '/huge'\n"
                 "fd = os.open(f, os.O_RDWR | os.O_CREAT)\nos.ftruncate(fd, 300 << 20)\n"
                 "os.dup2(fd, 18)\nos.close(fd)\nos.unlink(f)\n"
                 "print('READY', flush=True)\ntime.sleep(1000)\n"});
  ASSERT_TRUE(p.wait_ready());
  expect_refused(p, {"fd 18", (p.dir() / "huge").string(), "at most"});
}

}  // namespace
}  // namespace e2e
