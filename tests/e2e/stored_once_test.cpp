// Memory a parent shares copy-on-write with the children it forked is stored once in the image
// (issue 11, point 5): programs/cow_shared.c fills 32 MiB and a privately mapped file, forks three
// workers that change one page each, and checks after the restore that every process sees its
// own contents (and, restored normally, that the pages are shared again). The image must hold
// the shared pages only in the root's section; restored with every placement of the root's
// memory refused (CKPT_FAULT_NO_PREMAP), the workers get those pages from the root's copy kept
// aside instead.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include "test_process.hpp"

namespace e2e {
namespace {

using json = nlohmann::json;

struct Saved {
  uint64_t own = 0, as_roots = 0;
};

uint64_t bytes_of(const json& ranges) {
  uint64_t n = 0;
  for (auto& r : ranges) n += r["end"].get<uint64_t>() - r["start"].get<uint64_t>();
  return n;
}

// Per process of the newest generation, root first: bytes of pages in its own section, and
// those saved as the root's.
std::vector<Saved> saved_per_process(const fs::path& store) {
  auto list = run_ckpt({"show", "--json", store.string()});
  auto gens = json::parse(list.out, nullptr, false);
  if (gens.is_discarded() || gens["generations"].empty()) return {};
  auto one = run_ckpt({"show", "--json", gens["generations"][0]["path"].get<std::string>()});
  auto gen = json::parse(one.out, nullptr, false);
  if (gen.is_discarded()) return {};
  std::vector<Saved> out;
  for (auto& p : gen["image"]["processes"]) {
    Saved s;
    for (auto& v : p["memory"]["vmas"]) {
      s.own += bytes_of(v["pages"]);
      if (v.contains("from_root")) s.as_roots += bytes_of(v["from_root"]);
    }
    out.push_back(s);
  }
  return out;
}

constexpr uint64_t kArea = 32 << 20;

class StoredOnce : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }

  void dump_and_check_image(TestProcess& p) {
    ASSERT_TRUE(p.wait_ready());
    ASSERT_TRUE(p.dump());
    auto saved = saved_per_process(p.store());
    ASSERT_EQ(saved.size(), 4u) << "a root and three workers";
    EXPECT_GE(saved[0].own, kArea);
    EXPECT_EQ(saved[0].as_roots, 0u);
    for (size_t i = 1; i < saved.size(); ++i) {
      // Its changed page, its stack and the like are its own; the area is the root's.
      EXPECT_LT(saved[i].own, 1u << 20) << "worker " << i;
      EXPECT_GE(saved[i].as_roots, kArea - (64 << 10)) << "worker " << i;
    }
  }
};

TEST_F(StoredOnce, ForkedWorkersStoreOnlyWhatTheyChanged) {
  TestProcess p({program_path("cow_shared")});
  ASSERT_NO_FATAL_FAILURE(dump_and_check_image(p));
  ASSERT_TRUE(p.restore());
  EXPECT_TRUE(p.finish());
}

TEST_F(StoredOnce, PagesOfMemoryTheRestorerCannotPlaceComeFromTheRootsCopy) {
  TestProcess p({program_path("cow_shared"), "copied"});
  ASSERT_NO_FATAL_FAILURE(dump_and_check_image(p));
  ::setenv("CKPT_FAULT_NO_PREMAP", "1", 1);  // inherited by the restore run_ckpt starts
  auto restored = p.restore();
  ::unsetenv("CKPT_FAULT_NO_PREMAP");
  ASSERT_TRUE(restored);
  EXPECT_TRUE(p.finish());
}

// Reading a page through process_vm_readv pins it, and the kernel first gives a pinned page that
// is still shared copy-on-write a copy of its own: a dump reading the processes themselves (no
// snapshot) made every worker's and the root's memory private. Read through /proc/PID/mem, it
// stays shared; the program checks its sharing and contents again after the dumps.
TEST_F(StoredOnce, LeaveRunningDumpsKeepTheMemoryShared) {
  TestProcess p({program_path("cow_shared")});
  ASSERT_TRUE(p.wait_ready());
  std::vector<std::string> dump = {
      ckpt_path(),        "dump",           "-t", std::to_string(p.pid()), "-D",
      p.store().string(), "--leave-running"};
  auto stopped = run_command(dump, {"CKPT_NO_SNAPSHOT=1"}, 60s);
  ASSERT_EQ(stopped.exit_code(), 0) << stopped.describe();
  auto snapshot = run_command(dump, {}, 60s);
  ASSERT_EQ(snapshot.exit_code(), 0) << snapshot.describe();
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
