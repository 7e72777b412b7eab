#pragma once
// A test program run under the runner's protocol (programs/e2e_prog.h): started with stdin
// /dev/null and stdout/stderr in files of its own temporary directory, dumped, restored, told to
// check itself with SIGUSR2.
#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <set>

#include "e2e_util.hpp"

namespace e2e {

struct ProcessOptions {
  bool append_stdout = false;  // open stdout with O_APPEND
};

class TestProcess {
 public:
  explicit TestProcess(std::vector<std::string> argv, ProcessOptions opts = {});
  ~TestProcess();

  pid_t pid() const { return pid_; }
  const fs::path& dir() const { return dir_.path(); }
  fs::path store() const { return dir_ / "store"; }
  std::string out() const { return read_text(dir_ / "stdout"); }
  std::string err() const { return read_text(dir_ / "stderr"); }
  std::string output() const { return "stdout:\n" + out() + "\nstderr:\n" + err(); }

  // Waits for READY; false (with the output as a test failure) when it does not come.
  ::testing::AssertionResult wait_ready(std::chrono::milliseconds timeout = 10s);
  // `ckpt dump -t PID -D store EXTRA...`; without --leave-running also reaps the killed process
  // and every descendant killed with it, so that their PIDs are free for the restore.
  ::testing::AssertionResult dump(const std::vector<std::string>& extra = {});
  // `ckpt restore -D store --detach EXTRA...`; checks the printed PID is the old one and that
  // every descendant of the last dump runs again with the same PID under the same parent.
  ::testing::AssertionResult restore(const std::vector<std::string>& extra = {});
  // What the last restore() printed on stderr.
  const std::string& restore_err() const { return restore_err_; }
  // Sends SIGUSR2 and waits for the exit; success when it printed PASS, exited 0 and left none of
  // its descendants behind.
  ::testing::AssertionResult finish(std::chrono::milliseconds timeout = 15s);
  // SIGKILLs the process and its descendants and reaps them all.
  void kill_now();
  // The descendants at the last dump, each with its parent.
  const std::map<pid_t, pid_t>& tree() const { return tree_; }

 private:
  std::string restore_err_;
  // Our children that are not this process's (reaping its orphans must leave them alone).
  std::vector<pid_t> other_children() const;

  TempDir dir_;
  pid_t pid_ = -1;
  bool running_ = false;
  std::map<pid_t, pid_t> tree_;
  std::set<pid_t> zombies_;  // descendants that were zombies at the dump: zombies again after
};

// Waits until a counter program printed at least `count` values (counter_output.hpp) after the
// first `skip` bytes of its output.
bool wait_values(const TestProcess& p, size_t count, std::chrono::milliseconds timeout = 5s,
                 size_t skip = 0);

// Every program under tests/e2e/programs is built next to this path.
std::string program_path(const std::string& name);

}  // namespace e2e
