// The restorer SIGKILLed at its kill points (before and after each of its ptrace requests): no
// half-built process may run, the image stays usable, and the next restore works. A process the
// restorer had finished before it died must be whole: it checks itself.
#include <gtest/gtest.h>
#include <signal.h>

#include "rel_util.hpp"

namespace rel {
namespace {

struct Figures {
  size_t points = 0, tried = 0, killed = 0;
  size_t none_left = 0;      // kills after which no process of the image ran
  size_t whole_tree = 0;     // kills after which the whole tree ran, intact
  size_t partial_trees = 0;  // kills after which some processes ran (each intact), not all
  size_t harmed = 0;         // a running process that failed its check, or a restore that failed
};

void kill_all(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) ::kill(pid, SIGKILL);
  all_gone(pids, 10s);
}

// Which of `pids` exist now, not counting zombies.
std::vector<pid_t> running(const std::vector<pid_t>& pids) {
  std::vector<pid_t> out;
  for (pid_t pid : pids)
    if (alive(pid)) out.push_back(pid);
  return out;
}

// After a killed restore: either nothing of the image runs, or what runs is whole (untraced,
// running, answering its check). Kills what runs afterwards.
void judge_leftovers(const TestProcess& p, const std::vector<pid_t>& tree, Figures& f,
                     const std::string& where) {
  // The restorer's puppets die with it (PTRACE_O_EXITKILL, parent-death signal); give the
  // kernel a moment to deliver that, and reap what comes to us.
  all_gone(tree, 300ms);
  auto left = running(tree);
  if (left.empty()) {
    ++f.none_left;
    return;
  }
  std::map<pid_t, long> progress;
  bool ok = true;
  for (pid_t pid : left) {
    auto untraced = untraced_and_running(pid);
    EXPECT_TRUE(untraced) << "restorer killed at " << where;
    ok = ok && untraced;
  }
  auto checked = self_checks(p, left, progress);
  EXPECT_TRUE(checked) << "restorer killed at " << where << ": a process it left runs broken";
  ok = ok && checked;
  if (!ok)
    ++f.harmed;
  else if (left.size() == tree.size())
    ++f.whole_tree;
  else
    ++f.partial_trees;
  kill_all(tree);
}

// A complete restore, checked, then ended so that the next one finds its PIDs free. The output
// file grows with every check: restores accept that.
::testing::AssertionResult restore_and_check(TestProcess& p, const std::vector<pid_t>& tree,
                                             const std::vector<std::string>& env = {}) {
  auto r = run_ckpt_env({"restore", "-D", p.store().string(), "--detach", "--accept-changed-files"},
                        env);
  if (r.exit_code() != 0) return ::testing::AssertionFailure() << r.describe();
  std::map<pid_t, long> progress;
  auto checked = self_checks(p, tree, progress);
  kill_all(tree);
  return checked;
}

Figures kill_restorer_everywhere(TestProcess& p, size_t want) {
  Figures f;
  auto tree = tree_of(p.pid());
  std::map<pid_t, long> progress;
  EXPECT_TRUE(self_checks(p, tree, progress));
  EXPECT_TRUE(p.dump());  // without --leave-running: the tree is killed and reaped
  auto count_file = p.dir() / "points";
  EXPECT_TRUE(restore_and_check(p, tree, {"CKPT_FAULT_COUNT=" + count_file.string()}));
  auto names = read_points(count_file);
  f.points = names.size();
  auto at = choose_points(names, want);
  f.tried = at.size();
  for (long n : at) {
    std::string where = "point " + std::to_string(n) + " (" + names[n - 1] + ")";
    auto r =
        run_ckpt_env({"restore", "-D", p.store().string(), "--detach", "--accept-changed-files"},
                     {"CKPT_FAULT_KILL_AT=" + std::to_string(n)});
    EXPECT_TRUE(WIFEXITED(r.status) || WTERMSIG(r.status) == SIGKILL) << r.describe();
    if (r.exit_code() != 0) ++f.killed;
    judge_leftovers(p, tree, f, where);
    auto next = restore_and_check(p, tree);
    if (!next) ++f.harmed;
    EXPECT_TRUE(next) << "the restore after the one killed at " << where;
    if (::testing::Test::HasFailure()) break;
  }
  auto verify = run_ckpt({"verify", p.store().string()}, 60s);
  EXPECT_EQ(verify.exit_code(), 0) << verify.describe();
  std::printf(
      "restorer killed at %zu of %zu points tried (%zu in a complete restore): nothing "
      "left running %zu times, the whole tree intact %zu, part of a tree (each process "
      "intact) %zu, harmed %zu\n%s",
      f.killed, f.tried, f.points, f.none_left, f.whole_tree, f.partial_trees, f.harmed,
      summarize_kinds(names, at).c_str());
  return f;
}

TEST(RestorerKilled, AtItsKillPointsNothingHalfBuiltRunsAndTheNextRestoreWorks) {
  become_subreaper();
  TestProcess p({program_path("fault_target"), "32", "4"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  Figures f = kill_restorer_everywhere(p, 100);
  EXPECT_GE(f.killed, 80u);
  EXPECT_EQ(f.harmed, 0u);
  EXPECT_EQ(f.partial_trees, 0u);
}

// In a tree every process stays stopped until all are built, then they are let go children
// first: a restorer killed between two of those leaves children running whose parent died with
// it. Each of them must still be whole; how often that happens is printed (docs/reliability.md).
TEST(RestorerKilled, AtItsKillPointsOfATreeNoHalfBuiltProcessRuns) {
  become_subreaper();
  TestProcess p({program_path("fault_target"), "8", "2", "2"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  Figures f = kill_restorer_everywhere(p, 100);
  EXPECT_GE(f.killed, 80u);
  EXPECT_EQ(f.harmed, 0u);
}

}  // namespace
}  // namespace rel
