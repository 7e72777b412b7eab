// `ckpt run --pre-copy`: each checkpoint copies the program's memory while it runs and freezes it
// only to read what it wrote meanwhile (dump/pre_copy.hpp). mem_moves (mem_moves_run.hpp) changes
// its memory in every way a tracker could miss: a checkpoint that took a page from the copy after
// it was changed would make it print BAD after the recovery.
#include <gtest/gtest.h>

#include "mem_moves_run.hpp"
#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

TEST(SupervisorPreCopy, MemoryChangedEveryWayIsRecoveredExactlyFromPreCopiedCheckpoints) {
  TempDir d;
  auto store = d.path() / "store";
  Proc sv(d.path(), mem_moves_run(store, {"--pre-copy"}));
  std::string gen = checkpoint_mem_moves(sv, store);
  std::string manifest = slurp(store / gen / "manifest");
  EXPECT_NE(manifest.find("\"pre_copied_bytes\""), std::string::npos) << manifest;
  // At least one checkpoint read only the pages written during its copy while the program was
  // stopped (no snapshot); how many depends on the steps made meanwhile.
  EXPECT_GE(generations_with(store, "held_bytes"), 1u);
  expect_recovered_from(sv, store, gen);
}

}  // namespace
}  // namespace ckpt::test
