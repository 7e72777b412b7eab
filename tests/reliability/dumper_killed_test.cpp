// The dumper (the process that holds ptrace and injects system calls) SIGKILLed at its kill points:
// before and after each ptrace request, inside each injected system call, between buffers of the
// memory stream. After every kill each process of the target must run on untraced and not
// stopped, and check itself intact (memory, rbx/r12-r15, ymm0-15, signal masks, threads making
// progress), each thread with its own CPU mask; the store must still verify with the generation
// made before.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "rel_util.hpp"

namespace rel {
namespace {

struct Figures {
  size_t points = 0;  // in one complete dump
  size_t tried = 0;   // points chosen
  size_t killed = 0;  // dumps that died there (a point a later dump did not reach is not one)
  size_t harmed = 0;
};

// One complete dump with the points counted; returns their names.
std::vector<std::string> count_points(const TestProcess& p, const fs::path& store) {
  auto count_file = p.dir() / "points";
  auto r = run_ckpt_env({"dump", "-t", std::to_string(p.pid()), "-D", store, "--leave-running"},
                        {"CKPT_FAULT_COUNT=" + count_file.string()});
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  return read_points(count_file);
}

// The CPU mask of every thread of `tree` ("pid/tid" -> Cpus_allowed_list). The dumper pins each
// thread to its own CPU while it is stopped; killed, its parent must give the masks back.
std::map<std::string, std::string> cpu_masks(const std::vector<pid_t>& tree) {
  std::map<std::string, std::string> out;
  for (pid_t pid : tree) {
    fs::path tasks = fs::path("/proc") / std::to_string(pid) / "task";
    std::error_code ec;
    for (auto& t : fs::directory_iterator(tasks, ec)) {
      std::ifstream in(t.path() / "status");
      for (std::string line; std::getline(in, line);)
        if (line.rfind("Cpus_allowed_list:", 0) == 0)
          out[std::to_string(pid) + "/" + t.path().filename().string()] =
              line.substr(line.find('\t') + 1);
    }
  }
  return out;
}

// Kills the dumper of `p` at every chosen point and checks the whole tree after each kill.
Figures kill_dumper_everywhere(TestProcess& p, size_t want) {
  Figures f;
  auto store = p.dir() / "store";
  auto tree = tree_of(p.pid());
  std::map<pid_t, long> progress;
  EXPECT_TRUE(self_checks(p, tree, progress));
  auto masks = cpu_masks(tree);
  auto names = count_points(p, store);  // also the generation that must survive every kill
  auto before = generations(store);
  EXPECT_EQ(before.size(), 1u);
  f.points = names.size();
  auto at = choose_points(names, want);
  f.tried = at.size();
  for (long n : at) {
    std::string where = "point " + std::to_string(n) + " (" + names[n - 1] + ")";
    auto r = run_ckpt_env({"dump", "-t", std::to_string(p.pid()), "-D", store, "--leave-running"},
                          {"CKPT_FAULT_KILL_AT=" + std::to_string(n)});
    if (r.exit_code() == 0) continue;  // this dump made fewer points: nothing was killed
    ++f.killed;
    EXPECT_NE(r.err.find("ended without an answer"), std::string::npos) << where << r.describe();
    for (pid_t pid : tree) {
      auto ok = untraced_and_running(pid);
      if (!ok) ++f.harmed;
      EXPECT_TRUE(ok) << "dumper killed at " << where;
    }
    if (cpu_masks(tree) != masks) {
      ++f.harmed;
      ADD_FAILURE() << "dumper killed at " << where << ": a thread's CPU mask changed";
    }
    auto checked = self_checks(p, tree, progress);
    if (!checked) ++f.harmed;
    EXPECT_TRUE(checked) << "dumper killed at " << where;
    if (::testing::Test::HasFailure()) break;
  }
  auto verify = run_ckpt({"verify", store.string()}, 60s);
  EXPECT_EQ(verify.exit_code(), 0) << verify.describe();
  EXPECT_EQ(generations(store), before) << "the generation made before the kills is not all";
  std::printf(
      "dumper killed at %zu of %zu points tried (%zu in a complete dump), processes "
      "harmed: %zu\n%s",
      f.killed, f.tried, f.points, f.harmed, summarize_kinds(names, at).c_str());
  return f;
}

// 256 MiB, six threads besides the main one (three spinning in user code, three sleeping).
TEST(DumperKilled, AtItsKillPointsA256MiBMultiThreadedProcessRunsOnIntact) {
  become_subreaper();
  TestProcess p({program_path("fault_target"), "256", "6"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  Figures f = kill_dumper_everywhere(p, 150);
  EXPECT_GE(f.killed, 100u) << "too few points were reached";
  EXPECT_EQ(f.harmed, 0u);
  EXPECT_TRUE(p.finish(60s));
}

// A root with two children, each with threads of its own.
TEST(DumperKilled, AtItsKillPointsAProcessTreeRunsOnIntact) {
  become_subreaper();
  TestProcess p({program_path("fault_target"), "16", "3", "2"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_EQ(tree_of(p.pid()).size(), 3u);
  Figures f = kill_dumper_everywhere(p, 120);
  EXPECT_GE(f.killed, 100u) << "too few points were reached";
  EXPECT_EQ(f.harmed, 0u);
  EXPECT_TRUE(p.finish(60s));
}

// A Ctrl-C at the terminal reaches the whole process group of the ckpt command, which dies of it.
// Its dumper, in a group of its own, finishes the dump alone: the generation is committed and the
// program runs on, untraced. Signal 0 at a point halfway makes the dumper wait there, so that the
// group's SIGINT comes while it holds the program.
TEST(CallerInterrupted, ACtrlCToTheCommandsGroupLeavesTheDumpToFinish) {
  become_subreaper();
  TestProcess p({program_path("fault_target"), "16", "1"}, {.append_stdout = true});
  ASSERT_TRUE(p.wait_ready());
  auto tree = tree_of(p.pid());
  std::map<pid_t, long> progress;
  ASSERT_TRUE(self_checks(p, tree, progress));
  auto store = p.dir() / "store";
  auto names = count_points(p, store);
  ASSERT_GT(names.size(), 20u);
  auto before = generations(store);
  ASSERT_EQ(before.size(), 1u);
  auto sent = p.dir() / "sent";
  SpawnSpec spec;
  // setsid(1): the command leads a group of its own, as a shell's job does, so that the SIGINT
  // below reaches it and not this test.
  spec.argv = {"/usr/bin/setsid",       ckpt_path(), "dump",         "-t",
               std::to_string(p.pid()), "-D",        store.string(), "--leave-running"};
  spec.extra_env = {"CKPT_FAULT_KILL_AT=" + std::to_string(names.size() / 2),
                    "CKPT_FAULT_KILL_PID=" + std::to_string(p.pid()),
                    "CKPT_FAULT_SIGNAL=0",
                    "CKPT_FAULT_WAIT_MS=3000",
                    "CKPT_FAULT_SENT=" + sent.string(),
                    "CKPT_FAULT_COUNT=" + (p.dir() / "points-seen").string()};
  pid_t command = spawn(spec);
  ASSERT_TRUE(wait_for_text(sent, "sent", command, 20s))
      << "the dumper never reached point " << names.size() / 2;
  // The dumper (whose PID the points file names) is out of the command's group but in its
  // session: a session of its own would be a new autogroup, which Linux starved of CPU here
  // while other tasks kept the CPUs busy (seconds for a dump).
  std::ifstream seen(p.dir() / "points-seen");
  long first = 0;
  pid_t dumper = 0;
  ASSERT_TRUE(seen >> first >> dumper);
  EXPECT_NE(::getpgid(dumper), command);
  EXPECT_EQ(::getsid(dumper), command);
  ASSERT_EQ(::kill(-command, SIGINT), 0) << strerror(errno);
  auto status = wait_child(command, 10s);
  ASSERT_TRUE(status.has_value()) << "the ckpt command outlived its SIGINT";
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGINT) << describe_status(*status);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (generations(store).size() == before.size() && std::chrono::steady_clock::now() < deadline)
    sleep_for(20ms);
  EXPECT_EQ(generations(store).size(), before.size() + 1) << "the dump was not finished";
  EXPECT_TRUE(untraced_and_running(p.pid()));
  EXPECT_TRUE(self_checks(p, tree, progress));
  auto verify = run_ckpt({"verify", store.string()}, 60s);
  EXPECT_EQ(verify.exit_code(), 0) << verify.describe();
  EXPECT_TRUE(p.finish(60s));
}

}  // namespace
}  // namespace rel
