// One test per program in tests/e2e/programs: run it to READY, dump, restore, compare /proc
// before and after, then let the program check its own state.
#include <gtest/gtest.h>

#include <sstream>

#include "test_process.hpp"

namespace e2e {
namespace {

std::vector<std::string> program_names() {
  std::vector<std::string> out;
  std::istringstream in(E2E_PROGRAMS);
  for (std::string name; std::getline(in, name, ',');)
    if (!name.empty()) out.push_back(name);
  return out;
}

class ProgramTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_P(ProgramTest, DumpRestoreKeepsState) {
  TestProcess p({program_path(GetParam())});
  ASSERT_TRUE(p.wait_ready());
  sleep_for(100ms);  // let it settle into whatever it waits in
  ProcSnapshot before = snapshot(p.pid());
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());
  for (auto& d : compare_settled(before, p.pid()))
    ADD_FAILURE() << "/proc of pid " << p.pid() << ": " << d;
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Programs, ProgramTest, ::testing::ValuesIn(program_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace e2e
