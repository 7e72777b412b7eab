// How the dump plans each process's session and group (tree_plan.hpp): helpers for sessions and
// groups whose leaders are gone, late joins of groups led by processes created later, children
// created before their parent's setsid(), and refusals naming what cannot be rebuilt.
#include "resources/tree_plan.hpp"

#include <gtest/gtest.h>

#include <set>

namespace ckpt::tree {
namespace {

using GroupPlan = GroupStep;
using SessionPlan = SessionStep;

// Processes 900 (the runner's session) and 901 (its group) are alive outside the tree.
bool outside(pid_t id) {
  return id == 900 || id == 901;
}

Result<std::vector<TreePlan>> plan(const std::vector<TreeIds>& procs) {
  return plan_tree(procs, outside);
}

TEST(TreePlan, RootInTheRunnersSessionInheritsIt) {
  auto p = plan({{100, 1, 901, 900}, {101, 100, 901, 900}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)[0].session, SessionPlan::inherit);
  EXPECT_EQ((*p)[0].group, GroupPlan::inherit);
  EXPECT_EQ((*p)[1].group, GroupPlan::inherit);
}

TEST(TreePlan, DoubleForkedDaemonGetsASessionHelper) {
  // Root 100 in session 50, whose leader has exited; its child 101 leads a group there.
  auto p = plan({{100, 1, 50, 50}, {101, 100, 101, 50}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)[0].session, SessionPlan::helper);
  EXPECT_EQ((*p)[0].group, GroupPlan::inherit);
  EXPECT_EQ((*p)[1].session, SessionPlan::inherit);
  EXPECT_EQ((*p)[1].group, GroupPlan::lead);
}

TEST(TreePlan, SessionAndGroupWithoutLeadersGetTwoHelpers) {
  auto p = plan({{100, 1, 100, 100}, {102, 100, 60, 50}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)[1].session, SessionPlan::helper);
  EXPECT_EQ((*p)[1].group, GroupPlan::helper);
}

TEST(TreePlan, GroupWhoseLeaderExitedGetsAHelperThenIsJoined) {
  auto p = plan({{100, 1, 100, 100}, {101, 100, 70, 100}, {102, 100, 70, 100}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)[1].group, GroupPlan::helper);
  EXPECT_EQ((*p)[2].group, GroupPlan::join);
  EXPECT_EQ((*p)[2].leader, 70);
}

TEST(TreePlan, GroupLedByAProcessCreatedLaterIsJoinedLate) {
  auto p = plan({{100, 1, 100, 100}, {101, 100, 102, 100}, {102, 100, 102, 100}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)[1].group, GroupPlan::late);
  EXPECT_EQ((*p)[1].leader, 102);
  EXPECT_EQ((*p)[2].group, GroupPlan::lead);
}

TEST(TreePlan, ZombieLeaderCreatedFirstIsJoined) {
  auto p = plan({{100, 1, 100, 100}, {101, 100, 101, 100, true}, {102, 100, 101, 100}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)[1].group, GroupPlan::lead);
  EXPECT_EQ((*p)[2].group, GroupPlan::join);
}

TEST(TreePlan, ChildLeftInTheOldSessionIsCreatedEarly) {
  // 101 called setsid() after forking 102, which stayed in the root's session and group.
  auto p = plan({{100, 1, 901, 900}, {101, 100, 101, 101}, {102, 101, 901, 900}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE((*p)[2].early);
  EXPECT_EQ((*p)[2].session, SessionPlan::inherit);
  EXPECT_EQ((*p)[2].group, GroupPlan::inherit);
  EXPECT_EQ((*p)[1].session, SessionPlan::lead);
}

TEST(TreePlan, ChildLeftInSessionZeroIsCreatedEarly) {
  // A program started by PID 1 (a VM's or container's init) is in session and group 0; 101
  // called setsid() after forking 102, which stayed there.
  auto p = plan({{100, 1, 0, 0}, {101, 100, 101, 101}, {102, 101, 0, 0}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE((*p)[2].early);
  EXPECT_EQ((*p)[2].session, SessionPlan::inherit);
  EXPECT_EQ((*p)[2].group, GroupPlan::inherit);
  EXPECT_EQ((*p)[1].session, SessionPlan::lead);
}

TEST(TreePlan, SecondProcessOfAHelpersSessionWithAnotherParentIsRefused) {
  auto p = plan({{100, 1, 100, 100}, {101, 100, 50, 50}, {102, 100, 50, 50}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("pid 102: it is in session 50"), std::string::npos)
      << p.error().message;
}

TEST(TreePlan, SessionOfALiveOutsideProcessIsRefusedBelowTheRoot) {
  auto p = plan({{100, 1, 100, 100}, {101, 100, 900, 900}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("is in use outside the dumped processes"), std::string::npos)
      << p.error().message;
}

TEST(TreePlan, ZombieJoiningALaterLeaderIsRefused) {
  auto p = plan({{100, 1, 100, 100}, {101, 100, 102, 100, true}, {102, 100, 102, 100}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("zombie"), std::string::npos) << p.error().message;
}

}  // namespace
}  // namespace ckpt::tree
