// The crash policy of `ckpt run`: which exits are crashes, where recovery starts from, crash
// loops, fallback and giving up. Time is passed in, so nothing here sleeps.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "supervisor/policy.hpp"

namespace ckpt::supervisor {
namespace {

using Action = CrashPolicy::Action;

RestartRule rule(std::string_view spec) {
  auto r = RestartRule::parse(spec);
  EXPECT_TRUE(r.ok()) << spec;
  return r.ok() ? *r : RestartRule{};
}

ExitStatus exit_code(int c) {
  return {false, c};
}
ExitStatus killed(int sig) {
  return {true, sig};
}

PolicyConfig config(int max_retries = 2, int max_restarts = 100, double min_uptime = 5) {
  PolicyConfig c;
  c.rule = rule("any");
  c.max_retries = max_retries;
  c.max_restarts = max_restarts;
  c.min_uptime = Seconds(min_uptime);
  return c;
}

Seconds at(double s) {
  return Seconds(s);
}

TEST(SupervisorExitStatus, FromWaitStatusAndDescription) {
  ExitStatus e = ExitStatus::from_wait(3 << 8);
  EXPECT_FALSE(e.signaled);
  EXPECT_EQ(e.code, 3);
  EXPECT_EQ(e.describe(), "exit status 3");
  EXPECT_EQ(e.shell_code(), 3);
  ExitStatus k = ExitStatus::from_wait(SIGSEGV);
  EXPECT_TRUE(k.signaled);
  EXPECT_EQ(k.describe(), "killed by SIGSEGV");
  EXPECT_EQ(k.shell_code(), 128 + SIGSEGV);
}

TEST(SupervisorRestartRule, AnyCountsEveryFailureButNotExitZero) {
  auto r = rule("any");
  EXPECT_FALSE(r.is_crash(exit_code(0)));
  EXPECT_TRUE(r.is_crash(exit_code(1)));
  EXPECT_TRUE(r.is_crash(exit_code(255)));
  EXPECT_TRUE(r.is_crash(killed(SIGKILL)));
  EXPECT_TRUE(r.is_crash(killed(SIGABRT)));
}

TEST(SupervisorRestartRule, ChosenSignalsAndExitCodesOnly) {
  auto r = rule("SIGSEGV,abrt,9,exit=3");
  EXPECT_TRUE(r.is_crash(killed(SIGSEGV)));
  EXPECT_TRUE(r.is_crash(killed(SIGABRT)));
  EXPECT_TRUE(r.is_crash(killed(SIGKILL)));
  EXPECT_FALSE(r.is_crash(killed(SIGTERM)));
  EXPECT_TRUE(r.is_crash(exit_code(3)));
  EXPECT_FALSE(r.is_crash(exit_code(4)));
  auto sig = rule("signal");
  EXPECT_TRUE(sig.is_crash(killed(SIGBUS)));
  EXPECT_FALSE(sig.is_crash(exit_code(1)));
  auto ex = rule("exit");
  EXPECT_TRUE(ex.is_crash(exit_code(1)));
  EXPECT_FALSE(ex.is_crash(killed(SIGKILL)));
}

TEST(SupervisorRestartRule, BadWordsAreRefusedWithTheWord) {
  for (const char* bad : {"sigfoo", "exit=0", "exit=256", "exit=x", "", "any,,signal", "99"}) {
    auto r = RestartRule::parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("--restart-on"), std::string::npos) << r.error().message;
  }
}

TEST(SupervisorPolicy, ExitZeroAndNonCrashesFinishWithTheProgramsCode) {
  CrashPolicy p(config());
  p.started({}, at(0));
  auto d = p.exited(exit_code(0), at(10), false);
  EXPECT_EQ(d.action, Action::finish);
  EXPECT_EQ(d.exit_code, 0);

  PolicyConfig c = config();
  c.rule = rule("SIGSEGV");
  CrashPolicy q(c);
  q.started({}, at(0));
  d = q.exited(exit_code(7), at(10), false);
  EXPECT_EQ(d.action, Action::finish);
  EXPECT_EQ(d.exit_code, 7);
}

TEST(SupervisorPolicy, AStopTheUserAskedForIsNotACrash) {
  CrashPolicy p(config());
  p.started({}, at(0));
  auto d = p.exited(killed(SIGTERM), at(10), true);
  EXPECT_EQ(d.action, Action::finish);
  EXPECT_EQ(d.exit_code, 128 + SIGTERM);
}

TEST(SupervisorPolicy, RecoversFromTheNewestGenerationOfThisRun) {
  CrashPolicy p(config());
  p.started({}, at(0));
  p.checkpointed("g1");
  p.checkpointed("g2");
  auto d = p.exited(killed(SIGKILL), at(100), false);
  ASSERT_EQ(d.action, Action::recover);
  // "old" is in the store but from another run: never a candidate.
  auto o = p.next_origin({"old9", "g2", "g1"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->generation, "g2");
}

TEST(SupervisorPolicy, WithoutAnyGenerationRecoveryIsAFreshStart) {
  CrashPolicy p(config());
  p.started({}, at(0));
  ASSERT_EQ(p.exited(exit_code(1), at(100), false).action, Action::recover);
  auto o = p.next_origin({"foreign"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->fresh());
}

TEST(SupervisorPolicy, CrashLoopFallsBackToThePreviousGenerationThenFresh) {
  CrashPolicy p(config(/*max_retries=*/2));
  p.started({}, at(0));
  p.checkpointed("g1");
  p.checkpointed("g2");
  ASSERT_EQ(p.exited(killed(SIGSEGV), at(100), false).action, Action::recover);
  double t = 100;
  std::vector<std::string> store{"g2", "g1"};
  // g2: restored 3 times, each crashing within min-uptime; after the third (more than 2) it is
  // no longer used.
  for (int i = 0; i < 3; ++i) {
    auto o = p.next_origin(store);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->generation, "g2") << i;
    p.started(*o, at(t));
    t += 1;
    ASSERT_EQ(p.exited(killed(SIGSEGV), at(t), false).action, Action::recover);
  }
  for (int i = 0; i < 3; ++i) {
    auto o = p.next_origin(store);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->generation, "g1") << i;
    p.started(*o, at(t));
    t += 1;
    ASSERT_EQ(p.exited(killed(SIGSEGV), at(t), false).action, Action::recover);
  }
  for (int i = 0; i < 3; ++i) {
    auto o = p.next_origin(store);
    ASSERT_TRUE(o);
    EXPECT_TRUE(o->fresh()) << i;
    p.started(*o, at(t));
    t += 1;
    ASSERT_EQ(p.exited(killed(SIGSEGV), at(t), false).action, Action::recover);
  }
  EXPECT_FALSE(p.next_origin(store));
  std::string report = p.report("giving up");
  EXPECT_NE(report.find("generation g2 crashed 3 times"), std::string::npos) << report;
  EXPECT_NE(report.find("a fresh start crashed 3 times"), std::string::npos) << report;
  EXPECT_NE(report.find("killed by SIGSEGV after 1.0s"), std::string::npos) << report;
}

TEST(SupervisorPolicy, SlowCrashesDoNotCountTowardALoop) {
  CrashPolicy p(config(/*max_retries=*/1, /*max_restarts=*/1000, /*min_uptime=*/5));
  p.started({}, at(0));
  p.checkpointed("g1");
  double t = 10;
  ASSERT_EQ(p.exited(killed(SIGKILL), at(t), false).action, Action::recover);
  for (int i = 0; i < 10; ++i) {
    auto o = p.next_origin({"g1"});
    ASSERT_TRUE(o);
    EXPECT_EQ(o->generation, "g1");
    p.started(*o, at(t));
    t += 6;
    ASSERT_EQ(p.exited(killed(SIGKILL), at(t), false).action, Action::recover);
  }
}

TEST(SupervisorPolicy, GenerationsTakenJustBeforeAQuickCrashAreNotUsed) {
  // Checkpoints every 0.1 s and a crash 1 s after each restore: without dropping the
  // generations of the short life, recovery would hop to a new generation every time.
  CrashPolicy p(config(/*max_retries=*/0));
  p.started({}, at(0));
  p.checkpointed("g1");
  ASSERT_EQ(p.exited(killed(SIGSEGV), at(50), false).action, Action::recover);
  auto o = p.next_origin({"g1"});
  ASSERT_EQ(o->generation, "g1");
  p.started(*o, at(50));
  p.checkpointed("g2");
  p.checkpointed("g3");
  ASSERT_EQ(p.exited(killed(SIGSEGV), at(51), false).action, Action::recover);
  o = p.next_origin({"g3", "g2", "g1"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->fresh());
}

TEST(SupervisorPolicy, GivesUpAfterMaxRestartsWithTheHistory) {
  CrashPolicy p(config(/*max_retries=*/100, /*max_restarts=*/3, /*min_uptime=*/0));
  p.started({}, at(0));
  double t = 0;
  for (int i = 0; i < 3; ++i) {
    t += 10;
    ASSERT_EQ(p.exited(exit_code(4), at(t), false).action, Action::recover) << i;
    p.started(*p.next_origin({}), at(t));
  }
  EXPECT_EQ(p.restarts(), 3);
  auto d = p.exited(exit_code(4), at(t + 10), false);
  EXPECT_EQ(d.action, Action::give_up);
  EXPECT_EQ(d.exit_code, 4);
  EXPECT_NE(d.message.find("3 restarts"), std::string::npos) << d.message;
  std::string report = p.report(d.message);
  // One line per start and per exit: 4 starts, 4 exits.
  EXPECT_EQ(std::count(report.begin(), report.end(), '\n'), 8) << report;
}

TEST(SupervisorPolicy, UnusableGenerationsAreSkippedAndTold) {
  CrashPolicy p(config());
  p.started({}, at(0));
  p.checkpointed("g1");
  p.checkpointed("g2");
  ASSERT_EQ(p.exited(killed(SIGKILL), at(100), false).action, Action::recover);
  p.unusable("g2", "checksum mismatch");
  auto o = p.next_origin({"g2", "g1"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->generation, "g1");
  EXPECT_NE(p.report("x").find("generation g2 skipped: checksum mismatch"), std::string::npos);
}

TEST(SupervisorPolicy, ResumeAdoptsTheStoresGenerations) {
  CrashPolicy p(config());
  p.adopt("old1");
  auto o = p.next_origin({"old1"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->generation, "old1");
}

TEST(SupervisorPolicy, RemovedGenerationsAreNotChosen) {
  CrashPolicy p(config());
  p.started({}, at(0));
  p.checkpointed("g1");
  p.checkpointed("g2");
  ASSERT_EQ(p.exited(killed(SIGKILL), at(100), false).action, Action::recover);
  // Retention removed g1 and g2 is the only one left.
  EXPECT_EQ(p.next_origin({"g2"})->generation, "g2");
  EXPECT_TRUE(p.next_origin({})->fresh());
}

// A long run under `--interval 0.1`: what the policy keeps stays bounded by what retention keeps
// in the store, and its history by kMaxHistory (the report says how many events it left out).
TEST(SupervisorPolicy, AMonthOfCheckpointsAndCrashesTakesNoMoreMemory) {
  CrashPolicy p(config(/*max_retries=*/2, /*max_restarts=*/1000000, /*min_uptime=*/0.5));
  std::vector<std::string> store;
  double t = 0;
  p.started({}, at(t));
  for (int life = 0; life < 2000; ++life) {
    for (int c = 0; c < 20; ++c) {
      std::string g = "g" + std::to_string(life * 100 + c);
      p.checkpointed(g);
      store.insert(store.begin(), g);
      if (store.size() > 3) {
        p.forget({store.back()});
        store.pop_back();
      }
    }
    t += 10;
    ASSERT_EQ(p.exited(killed(SIGKILL), at(t), false).action, Action::recover);
    auto o = p.next_origin(store);
    ASSERT_TRUE(o && o->generation) << life;
    EXPECT_EQ(*o->generation, store.front());
    p.started(*o, at(t));
  }
  EXPECT_LE(p.remembered(), 3u + 20u) << "generations of the store and of the current life";
  EXPECT_EQ(p.history().size(), CrashPolicy::kMaxHistory);
  std::string report = p.report("x");
  EXPECT_NE(report.find("(3801 earlier events)"), std::string::npos) << report.substr(0, 200);
  EXPECT_NE(report.find("started from generation g199919"), std::string::npos);
}

}  // namespace
}  // namespace ckpt::supervisor
