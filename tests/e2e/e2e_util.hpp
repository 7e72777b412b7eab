#pragma once
#include <gtest/gtest.h>
// The e2e runner's toolbox: starting processes with exactly the fds we choose, running the ckpt
// command, waiting with deadlines, and snapshots of what /proc shows about a process.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace e2e {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A fresh directory under /tmp, removed with everything in it.
using TempDir = ckpt::test_support::TempDir;

// How to start a process: fds[i] (in the runner) becomes fd i (0..2) in the child and nothing
// else stays open.
struct SpawnSpec {
  std::vector<std::string> argv;
  int fds[3] = {-1, -1, -1};
  fs::path cwd;
  std::vector<std::string> extra_env;
};

pid_t spawn(const SpawnSpec& spec);

// The runner becomes the parent of every orphan it creates (restored processes whose ckpt
// exited), so it can reap them and take their PIDs back at once.
void become_subreaper();

// Waits for `pid` (a child) to end, up to `timeout`; kills it with SIGKILL at the deadline.
// Returns the wait status, or nullopt on timeout.
// `before_kill`, when given, runs at the deadline while the process still stands as it was.
std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds timeout,
                              const std::function<void()>& before_kill = {});
std::string describe_status(int status);

struct CkptResult {
  int status = -1;  // wait status
  std::string out, err;
  int exit_code() const;
  std::string describe() const;
};

// Runs `ckpt ARGS...` with stdin /dev/null and stdout/stderr captured.
CkptResult run_ckpt(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 20s);
// The same for any command (argv[0] is a path).
CkptResult run_command(const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = 10s);
// The same with `env` ("NAME=VALUE" each) added to the environment.
CkptResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       std::chrono::milliseconds timeout);
const std::string& ckpt_path();
// The number of a dumper's fault point named `name` ("WHAT DETAIL") in the CKPT_FAULT_COUNT
// file it wrote (common/fault_point.hpp), 0 if it never came.
long point_number(const fs::path& count_file, const std::string& name);
// How many times `word` appears in `text` from offset `from` on.
size_t count_from(const std::string& text, const std::string& word, size_t from);

int open_or_die(const fs::path& p, int flags, mode_t mode = 0644);
std::string read_text(const fs::path& p);
// Polls `file` until it contains `text`; false when `pid` died or time ran out.
bool wait_for_text(const fs::path& file, const std::string& text, pid_t pid,
                   std::chrono::milliseconds timeout);
bool alive(pid_t pid);
// What a failed dump must leave: the process alive, traced by nobody and, with `sleeping`, back
// in the interruptible wait it was in.
::testing::AssertionResult left_running_untraced(pid_t pid, bool sleeping = true);
// One field of /proc/PID/status ("" when missing).
std::string status_field(pid_t pid, const std::string& key);
std::vector<pid_t> children_of_self();
// The same without zombies, which it reaps (a leave-running dump's ended snapshot process).
std::vector<pid_t> live_children_of_self();
// Every descendant of `pid` (children of all its threads, recursively), parents before children.
std::vector<pid_t> descendants(pid_t pid);
// The parent of each of `pids` as /proc shows it now (0 when gone).
std::map<pid_t, pid_t> parents_of(const std::vector<pid_t>& pids);
// Waits until every one of `pids`, and every child of ours not in `keep`, is gone: reaped here
// when it became our child (orphans of a killed tree come to the runner, a child subreaper), or
// vanished elsewhere. At the deadline SIGKILLs the stragglers and names the first one.
::testing::AssertionResult reap_all(const std::vector<pid_t>& pids, const std::vector<pid_t>& keep,
                                    std::chrono::milliseconds timeout = 5s);

// What /proc says about a process, normalised so that two snapshots of the same state compare
// equal (pipe inode numbers become their order of appearance).
struct ProcSnapshot {
  std::vector<std::string> maps;
  std::map<std::string, std::string> status;
  std::vector<std::string> fds;
  std::vector<std::string> threads;  // "tid name sigblk sigpnd" each
  // Per thread, what a program can observe of its scheduling, capabilities and ids: "tid
  // key=value ..." (thread_settings in e2e_util.cpp). Securebits, the parent-death signal, the
  // timer slack of other threads than the main one and the memory policy cannot be read from
  // outside: the test programs check those themselves (programs/thread_settings.c).
  std::vector<std::string> thread_settings;
  // cmdline, environ, exe, cwd, limits, personality, oom_score_adj, timerslack_ns
  std::map<std::string, std::string> misc;
};
ProcSnapshot snapshot(pid_t pid);
// Human-readable differences; empty when equal.
std::vector<std::string> compare(const ProcSnapshot& before, const ProcSnapshot& after);
// A process caught between two calls shows a passing state (dash's `wait` swaps its signal mask
// in and out around sigsuspend()): snapshots until two taken 10 ms apart agree (at most 2 s).
ProcSnapshot settled_snapshot(pid_t pid);
// A restored thread re-enters the call it was stopped in only once it is scheduled, and /proc
// shows the mask that call swaps out until then: compares until no difference is left or 2 s
// passed, and returns the differences of the last try. A lasting difference still shows.
std::vector<std::string> compare_settled(const ProcSnapshot& before, pid_t pid);

void sleep_for(std::chrono::milliseconds d);

// Lines in a command's output (a last line without a newline counts).
size_t line_count(const std::string& s);

}  // namespace e2e
