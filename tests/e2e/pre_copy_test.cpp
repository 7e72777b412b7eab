// Pre-copy dumps (`ckpt dump --leave-running --pre-copy`, dump/pre_copy.hpp): the memory is copied
// while the program runs and the freeze reads only what it wrote meanwhile. The image must hold
// every page as it was at the freeze, the pages copied early included, and the program must keep
// nothing of it: no extra fd, no mapping left registered with ckpt's userfaultfd, no extra child,
// SIGCHLD or EINTR (the writer checks those itself).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "snapshot_writer.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

using json = nlohmann::json;

size_t open_fds(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    ++n;
  return n;
}

// Mappings whose VmFlags say a userfaultfd write-protects them ("uw").
size_t registered_mappings(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  size_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmFlags:") && (line + " ").find(" uw ") != std::string::npos) ++n;
  return n;
}

json pre_copy_dump(const TestProcess& p) {
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string(),
                     "--leave-running", "--pre-copy", "--json"},
                    60s);
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  return r.exit_code() == 0 ? json::parse(r.out) : json();
}

uint64_t label_number(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? std::stoull(j[key].get<std::string>()) : 0;
}

// The writer rewrites one page every 200 us, so a pre-copy of its 8 MiB leaves it a few pages
// written meanwhile: those are read frozen, the rest comes from the copy. A moment of the machine
// slow enough for it to rewrite more than a thirtieth of its memory meanwhile makes that dump take
// a snapshot after all; ten tries give one dump that did not.
TEST(PreCopy, PagesWrittenMeanwhileAreReadFrozenAndEveryPageRestoresWithItsFreezeTimeValue) {
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "8", "200"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_sweeps(p, 1, 0)) << p.output();
  size_t fds = open_fds(p.pid());
  uint64_t held = 0;
  for (int i = 0; i < 10 && held == 0; ++i) {
    json j = pre_copy_dump(p);
    ASSERT_FALSE(j.is_null());
    EXPECT_GT(label_number(j, "pre_copied_bytes"), 8u << 20) << j.dump();
    held = label_number(j, "held_bytes");
  }
  ASSERT_GT(held, 0u) << "every dump fell back to a snapshot";
  EXPECT_EQ(open_fds(p.pid()), fds);
  EXPECT_EQ(registered_mappings(p.pid()), 0u) << "the dump left its userfaultfd registered";
  // A page taken from the copy after the writer had rewritten it would hold an older sweep.
  expect_writer_restores_every_page(p);
}

// Without pauses the writer rewrites most of its memory while it is copied: the dump takes a
// snapshot as without pre-copy, and says so; the image is as right as ever.
TEST(PreCopy, AWriterFasterThanTheCopyGetsASnapshotAndRestoresTheSame) {
  become_subreaper();
  TestProcess p({program_path("snapshot_writer"), "64"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(wait_sweeps(p, 1, 0)) << p.output();
  uint64_t snapshots = 0;
  for (int i = 0; i < 3; ++i) {
    json j = pre_copy_dump(p);
    ASSERT_FALSE(j.is_null());
    snapshots += label_number(j, "pre_copy_snapshots");
  }
  EXPECT_GE(snapshots, 1u);
  EXPECT_EQ(registered_mappings(p.pid()), 0u);
  expect_writer_restores_every_page(p);
}

// --pre-copy without --leave-running: nothing to copy ahead of a dump that kills; the dump is an
// ordinary one.
TEST(PreCopy, WithoutLeaveRunningTheDumpIsAnOrdinaryOne) {
  become_subreaper();
  TestProcess p({program_path("memory")});
  ASSERT_TRUE(p.wait_ready());
  sleep_for(100ms);  // into the wait it is dumped in, as ProgramTest lets it
  ASSERT_TRUE(p.dump({"--pre-copy"}));
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
