#include "test_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "counter_output.hpp"

namespace e2e {

std::string program_path(const std::string& name) {
  return std::string(E2E_PROGRAM_DIR) + "/" + name;
}

TestProcess::TestProcess(std::vector<std::string> argv, ProcessOptions opts) {
  int in = open_or_die("/dev/null", O_RDONLY);
  int out = open_or_die(dir_ / "stdout",
                        O_WRONLY | O_CREAT | O_TRUNC | (opts.append_stdout ? O_APPEND : 0));
  int err = open_or_die(dir_ / "stderr", O_WRONLY | O_CREAT | O_TRUNC);
  SpawnSpec spec;
  spec.argv = std::move(argv);
  spec.fds[0] = in;
  spec.fds[1] = out;
  spec.fds[2] = err;
  spec.cwd = dir_.path();
  spec.extra_env.push_back("E2E_DIR=" + dir_.path().string());
  pid_ = spawn(spec);
  running_ = true;
  ::close(in);
  ::close(out);
  ::close(err);
}

TestProcess::~TestProcess() {
  kill_now();
}

std::vector<pid_t> TestProcess::other_children() const {
  auto out = children_of_self();
  std::erase(out, pid_);
  return out;
}

void TestProcess::kill_now() {
  if (!running_) return;
  auto keep = other_children();
  auto tree = descendants(pid_);
  ::kill(pid_, SIGKILL);
  for (pid_t d : tree) ::kill(d, SIGKILL);
  wait_child(pid_, 5s);
  EXPECT_TRUE(reap_all(tree, keep)) << "a process of the killed tree of " << pid_;
  running_ = false;
}

::testing::AssertionResult TestProcess::wait_ready(std::chrono::milliseconds timeout) {
  if (wait_for_text(dir_ / "stdout", "READY\n", pid_, timeout))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "program " << pid_ << " did not get READY\n" << output();
}

namespace {

// CKPT_E2E_SHELL_JOB=1 runs every dump and restore with --shell-job, as CRIU's users call it: the
// programs' stdout and stderr are files, which must stay those files (issue 11, point 1).
void add_mode_flags(std::vector<std::string>& args) {
  const char* mode = std::getenv("CKPT_E2E_SHELL_JOB");
  if (mode && std::string(mode) == "1") args.push_back("--shell-job");
}

// CKPT_E2E_PRE_COPY=1 turns every dump that would kill the program into a --leave-running
// --pre-copy dump, after which the test kills the tree itself: every program is then saved from
// memory copied while it ran (dump/pre_copy.hpp), stopped once more before the freeze, and must
// come back the same.
bool pre_copy_mode(const std::vector<std::string>& extra) {
  const char* mode = std::getenv("CKPT_E2E_PRE_COPY");
  return mode && std::string(mode) == "1" &&
         std::find(extra.begin(), extra.end(), "--leave-running") == extra.end();
}

}  // namespace

::testing::AssertionResult TestProcess::dump(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"dump", "-t", std::to_string(pid_), "-D", store().string()};
  args.insert(args.end(), extra.begin(), extra.end());
  add_mode_flags(args);
  bool pre_copy = pre_copy_mode(extra);
  if (pre_copy) {
    args.push_back("--leave-running");
    args.push_back("--pre-copy");
  }
  auto keep = other_children();
  auto tree = parents_of(descendants(pid_));
  std::set<pid_t> zombies;
  for (auto& [d, parent] : tree)
    if (status_field(d, "State").rfind("Z", 0) == 0) zombies.insert(d);
  auto r = run_ckpt(args);
  if (r.exit_code() != 0) {
    return ::testing::AssertionFailure()
           << "ckpt dump of " << pid_ << " failed: " << r.describe() << "\nprogram " << output();
  }
  if (pre_copy && r.err.find("pre-copy: ") == std::string::npos)
    return ::testing::AssertionFailure() << "the dump made no pre-copy: " << r.describe();
  tree_ = std::move(tree);
  zombies_ = std::move(zombies);
  bool leave_running = std::find(extra.begin(), extra.end(), "--leave-running") != extra.end();
  if (leave_running) return ::testing::AssertionSuccess();
  if (pre_copy) {
    // Stopped first, all of them: one killed while the others run would show them its end (a
    // pipe's EOF) and they could write about it into files the image has.
    for (int sig : {SIGSTOP, SIGKILL}) {
      ::kill(pid_, sig);
      for (auto& [d, parent] : tree_) ::kill(d, sig);
    }
  }
  auto st = wait_child(pid_, 5s);
  running_ = false;
  std::vector<pid_t> killed;
  for (auto& [d, parent] : tree_) killed.push_back(d);
  auto reaped = reap_all(killed, keep);
  if (!st) return ::testing::AssertionFailure() << "the dumped process did not die";
  if (!WIFSIGNALED(*st) || WTERMSIG(*st) != SIGKILL)
    return ::testing::AssertionFailure()
           << "the dumped process ended with " << describe_status(*st) << ", not SIGKILL\n"
           << output();
  if (!reaped) return reaped << " after the dump of " << pid_ << " (the dump kills its whole tree)";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult TestProcess::restore(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"restore", "-D", store().string(), "--detach"};
  args.insert(args.end(), extra.begin(), extra.end());
  add_mode_flags(args);
  const char* lazy = std::getenv("CKPT_E2E_LAZY");
  if (lazy && std::string(lazy) == "1" &&
      std::find(args.begin(), args.end(), "--lazy") == args.end())
    args.push_back("--lazy");
  auto r = run_ckpt(args);
  restore_err_ = r.err;
  if (r.exit_code() != 0)
    return ::testing::AssertionFailure()
           << "ckpt restore failed: " << r.describe() << "\nprogram " << output();
  running_ = true;  // whatever pid it printed, pid_ may be ours again: clean it up at the end
  pid_t printed = static_cast<pid_t>(std::atol(r.out.c_str()));
  if (printed != pid_) {
    if (printed > 0) {
      ::kill(printed, SIGKILL);
      wait_child(printed, 5s);
    }
    return ::testing::AssertionFailure() << "restore printed pid '" << r.out << "', want " << pid_;
  }
  for (auto& [d, parent] : tree_) {
    bool zombie_again = zombies_.count(d) && status_field(d, "State").rfind("Z", 0) == 0;
    if (!alive(d) && !zombie_again)
      return ::testing::AssertionFailure()
             << "descendant " << d << " (child of " << parent << ") was not restored";
    std::string now = status_field(d, "PPid");
    if (now != std::to_string(parent))
      return ::testing::AssertionFailure()
             << "descendant " << d << " was restored with parent " << now << ", want " << parent;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult TestProcess::finish(std::chrono::milliseconds timeout) {
  auto keep = other_children();
  auto tree = descendants(pid_);
  ::kill(pid_, SIGUSR2);
  auto st = wait_child(pid_, timeout);
  running_ = false;
  // A program waits for its children: any of them still there is a leak (or a hang).
  auto reaped = reap_all(tree, keep, 2s);
  if (!st) return ::testing::AssertionFailure() << "program did not finish in time\n" << output();
  if (!reaped) return reaped << " after program " << pid_ << " ended\n" << output();
  bool passed = out().find("\nPASS\n") != std::string::npos;
  if (WIFEXITED(*st) && WEXITSTATUS(*st) == 0 && passed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "program ended with " << describe_status(*st) << "\n"
                                       << output();
}

bool wait_values(const TestProcess& p, size_t count, std::chrono::milliseconds timeout,
                 size_t skip) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string out = p.out();
    if (counter_values(out.substr(std::min(skip, out.size()))).size() >= count) return true;
    sleep_for(5ms);
  }
  return false;
}

}  // namespace e2e
