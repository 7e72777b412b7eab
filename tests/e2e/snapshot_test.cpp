// The short freeze of a --leave-running dump (a copy-on-write snapshot taken inside the process,
// dump/snapshot.hpp): the image holds every page as it was at the snapshot although the program
// wrote on while its pages were copied, the program sees no extra child, SIGCHLD or EINTR, and
// shared, MADV_DONTFORK and MADV_WIPEONFORK areas come back exactly, also when they became so
// after the dump read the flags of the mappings early (resources/vm_flags.hpp).
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <string>

#include "snapshot_writer.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

// A dump with the snapshot (the log warns when it falls back to copying stopped).
::testing::AssertionResult snapshot_dump(const TestProcess& p) {
  auto r = run_ckpt(
      {"dump", "-t", std::to_string(p.pid()), "-D", p.store().string(), "--leave-running"}, 60s);
  if (r.exit_code() != 0) return ::testing::AssertionFailure() << r.describe();
  if (r.err.find("no snapshot") != std::string::npos ||
      r.err.find("copying its memory stopped") != std::string::npos)
    return ::testing::AssertionFailure() << "the dump did not use a snapshot: " << r.err;
  // The flags read before the freeze held: nothing made it dump again.
  if (r.err.find("dumping again") != std::string::npos)
    return ::testing::AssertionFailure() << "the dump was taken twice: " << r.err;
  return ::testing::AssertionSuccess();
}

std::vector<std::string> dump_args(const TestProcess& p) {
  return {ckpt_path(),        "dump",           "-t", std::to_string(p.pid()), "-D",
          p.store().string(), "--leave-running"};
}

TEST(ShortFreeze, PagesWrittenDuringTheCopyRestoreWithTheirSnapshotTimeValues) {
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "64"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_sweeps(p, 2, 0)) << p.output();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(snapshot_dump(p)) << "dump " << i;
  // Copy-on-write left every page the original rewrote meanwhile intact.
  expect_writer_restores_every_page(p);
}

TEST(ShortFreeze, NoChildSigchldOrEintrIsSeenAndSpecialAreasRestoreExactly) {
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "8"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(snapshot_dump(p)) << "dump " << i;
  ASSERT_TRUE(wait_sweeps(p, sweeps(p.out()) + 2, 0)) << p.output();
  p.kill_now();
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  ASSERT_TRUE(wait_sweeps(p, 2, cut)) << p.output();
  // The restored process checks the areas, the children and signals it saw since it started.
  EXPECT_TRUE(p.finish());
}

// A dump during which the program advises two areas MADV_WIPEONFORK and MADV_DONTFORK: a
// counting dump finds the fault point of the flags' early read, and a second dump sends the
// program SIGUSR1 there. `env` goes to both dumps.
void dump_advised_before_freeze(TestProcess& p, std::vector<std::string> env, CkptResult& out) {
  TempDir d;
  fs::path count = d.path() / "points";
  std::vector<std::string> counting = env;
  counting.push_back("CKPT_FAULT_COUNT=" + count.string());
  auto counted = run_command(dump_args(p), counting, 60s);
  ASSERT_EQ(counted.exit_code(), 0) << counted.describe();
  long at = point_number(count, "memory flags read early");
  ASSERT_GT(at, 0) << "no early read of the flags";
  for (std::string e :
       {"CKPT_FAULT_KILL_AT=" + std::to_string(at),
        "CKPT_FAULT_KILL_PID=" + std::to_string(p.pid()),
        "CKPT_FAULT_SIGNAL=" + std::to_string(SIGUSR1), std::string("CKPT_FAULT_WAIT_MS=300")})
    env.push_back(e);
  out = run_command(dump_args(p), env, 60s);
  ASSERT_EQ(out.exit_code(), 0) << out.describe();
}

// The program advised both areas, and a restore of the dump brings them back with their bytes
// (the restored process checks them, and the rest, and says PASS).
void expect_advised_areas_restored(TestProcess& p) {
  ASSERT_TRUE(wait_sweeps(p, sweeps(p.out()) + 1, 0)) << p.output();
  EXPECT_NE(p.out().find("ADVISED"), std::string::npos) << p.output();
  p.kill_now();
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  ASSERT_TRUE(wait_sweeps(p, 2, cut)) << p.output();
  EXPECT_TRUE(p.finish());
}

// madvise() on whole mappings changes no line of /proc/PID/maps: two areas that become
// MADV_WIPEONFORK and MADV_DONTFORK just after the dump read the flags early (the program gets
// SIGUSR1 at that moment) are in the snapshot empty and missing; the dump sees it there, is taken
// again with the flags read while stopped, and both areas come back with their bytes. The early
// read is that of a ckpt without the BPF iterator (CKPT_VM_FLAGS=smaps, as when not root).
TEST(ShortFreeze, FlagsChangedJustBeforeTheFreezeAreSeenAndTheDumpTakenAgain) {
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "8"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  CkptResult r;
  ASSERT_NO_FATAL_FAILURE(dump_advised_before_freeze(p, {"CKPT_VM_FLAGS=smaps"}, r));
  EXPECT_NE(r.err.find("between the early read of its flags and the freeze; dumping again"),
            std::string::npos)
      << r.err;
  expect_advised_areas_restored(p);
}

// With the BPF iterator the flags are read at the freeze itself: the same change at the same
// moment is simply in the image, no dump is taken twice, and both areas come back.
TEST(ShortFreeze, FlagsChangedJustBeforeTheFreezeAreReadThereByTheIterator) {
  ASSERT_EQ(geteuid(), 0u) << "the BPF iterator needs root";
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "8"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  CkptResult r;
  ASSERT_NO_FATAL_FAILURE(dump_advised_before_freeze(p, {"CKPT_LOG=memory=debug"}, r));
  EXPECT_NE(r.err.find("VmFlags come from a BPF vma iterator"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("dumping again"), std::string::npos) << r.err;
  expect_advised_areas_restored(p);
}

TEST(ShortFreeze, WithoutSnapshotTheSameDumpStillRestores) {
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "8"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  auto r = run_command({ckpt_path(), "dump", "-t", std::to_string(p.pid()), "-D",
                        p.store().string(), "--leave-running"},
                       {"CKPT_NO_SNAPSHOT=1"}, 60s);
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  p.kill_now();
  size_t cut = p.out().size();
  ASSERT_TRUE(p.restore({"--accept-changed-files"}));
  ASSERT_TRUE(wait_sweeps(p, 2, cut)) << p.output();
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
