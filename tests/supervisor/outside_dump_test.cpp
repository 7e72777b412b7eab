// `ckpt dump --leave-running` of a program that `ckpt run --incremental` tracks (its memory is
// registered with the supervisor's userfaultfd, which the dump does not hold): a migration or an
// extra copy taken by hand. The dump still takes a snapshot (the supervisor's userfaultfd asks
// for no fork events), the supervisor's tracking goes on missing nothing, and the image restores
// right. With a userfaultfd that sends fork events open anywhere, the memory is copied stopped.
#include <gtest/gtest.h>

#include "mem_moves_run.hpp"
#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

const std::string kNoSnapshot = "copying its memory stopped";

std::pair<int, std::string> dump_outside(const fs::path& store, const fs::path& dir) {
  pid_t child = run_state(store).value("child_pid", 0);
  if (child <= 0) return {-1, "no program runs"};
  return run_cmd(
      {CKPT_CLI_PATH, "dump", "-t", std::to_string(child), "-D", dir.string(), "--leave-running"});
}

TEST(SupervisorOutsideDump, ATrackedProgramIsSnapshottedAndBothItsImageAndTheTrackingStayRight) {
  TempDir d;
  auto store = d.path() / "store", outside = d.path() / "outside";
  Proc sv(d.path(), mem_moves_run(store, {"--incremental"}));
  checkpoint_mem_moves(sv, store);
  pid_t child = run_state(store).value("child_pid", 0);
  ASSERT_GT(child, 0);
  auto [code, text] = dump_outside(store, outside);
  ASSERT_EQ(code, 0) << text;
  EXPECT_EQ(text.find(kNoSnapshot), std::string::npos) << text;
  // The snapshot's fork left the supervisor's write tracking as it was: its next checkpoints
  // are still incremental, and the program recovered from the last one finds every page right.
  for (int i = 1; i <= 2; ++i) {
    int served = run_state(store).value("requests_served", 0);
    ASSERT_EQ(::kill(sv.pid(), SIGUSR1), 0);
    ASSERT_TRUE(eventually([&] { return run_state(store).value("requests_served", 0) > served; }))
        << sv.err();
  }
  std::string gen = run_state(store).value("last_generation", "");
  // Unread pages: the tracking was trusted (not a fall-back to page hashes).
  EXPECT_NE(slurp(store / gen / "manifest").find("\"pages_unread\""), std::string::npos);
  expect_recovered_from(sv, store, gen);
  // The image taken outside comes back where the program was then (its output file has grown
  // since): it checks all its memory at every step until told to end.
  fs::create_directories(d.path() / "restorer");
  Proc restored(d.path() / "restorer",
                {CKPT_CLI_PATH, "restore", "-D", outside.string(), "--accept-changed-files"});
  ASSERT_TRUE(eventually([&] { return fs::exists(fs::path("/proc") / std::to_string(child)); }));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_EQ(::kill(child, SIGTERM), 0);
  EXPECT_EQ(restored.wait(), 0) << restored.err() << slurp(d.path() / "out");
  EXPECT_EQ(count(slurp(d.path() / "out"), "BAD"), 0u);
}

// What `ckpt dump` must not do then: fork the program, which would tell that userfaultfd's
// monitor and wait for its answer.
TEST(SupervisorOutsideDump, AUserfaultfdWithForkEventsAnywhereMakesTheDumpCopyStopped) {
  TempDir d;
  auto store = d.path() / "store";
  auto ready = d.path() / "ready";
  fs::create_directories(d.path() / "holder");
  Proc holder(d.path() / "holder",
              {"/usr/bin/python3", "-c",
               "import ctypes, fcntl, os, struct, sys, time\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               "fd = libc.syscall(323, os.O_CLOEXEC)  # userfaultfd\n"
               "assert fd >= 0, os.strerror(ctypes.get_errno())\n"
               "api = bytearray(struct.pack('QQQ', 0xAA, 2, 0))  # UFFD_FEATURE_EVENT_FORK\n"
               "fcntl.ioctl(fd, 0xC018AA3F, api)  # UFFDIO_API\n"
               "open(sys.argv[1], 'w').close()\n"
               "time.sleep(600)\n",
               ready.string()});
  ASSERT_TRUE(eventually([&] { return fs::exists(ready); })) << slurp(d.path() / "holder/err");
  Proc sv(d.path(), mem_moves_run(store, {"--incremental"}));
  checkpoint_mem_moves(sv, store);
  auto [code, text] = dump_outside(store, d.path() / "outside");
  ASSERT_EQ(code, 0) << text;
  EXPECT_NE(text.find("one on this machine sends fork events); " + kNoSnapshot), std::string::npos)
      << text;
  ASSERT_EQ(::kill(sv.pid(), SIGTERM), 0);
  EXPECT_EQ(sv.wait(), 0) << sv.err();
}

}  // namespace
}  // namespace ckpt::test
