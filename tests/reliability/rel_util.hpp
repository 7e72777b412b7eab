#pragma once
// Helpers of the fault-injection tests: running ckpt with a kill point, choosing points, and the
// checks a target must pass after each kill (programs/fault_target.c answers them).
#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "e2e_util.hpp"
#include "test_process.hpp"

namespace rel {

using namespace e2e;

// CKPT_RELIABILITY_FULL=1: every point, every flip, every cycle (docs/reliability.md).
bool full_run();
// `n` in CI, `full` with CKPT_RELIABILITY_FULL=1.
long scaled(long n, long full);

// Runs `ckpt ARGS...` with extra environment variables (NAME=VALUE).
CkptResult run_ckpt_env(const std::vector<std::string>& args, const std::vector<std::string>& env,
                        std::chrono::milliseconds timeout = 60s);

// The kill points a run of ckpt went through, as CKPT_FAULT_COUNT wrote them: "before
// PTRACE_SYSCALL", ... in order (the Nth entry is point N+1).
std::vector<std::string> read_points(const fs::path& count_file);

// Which points to kill at: every one in a full run; otherwise about `want` of them evenly spread
// (an odd stride, so that "before" and "after" points both come up), the first of each kind and
// the last few (where processes are let go).
std::vector<long> choose_points(const std::vector<std::string>& names, size_t want);

// "before PTRACE_SETREGS" -> how many of each kind were killed at, for the figures.
std::string summarize_kinds(const std::vector<std::string>& names, const std::vector<long>& at);

// Every thread of `pid` is traced by nobody and not stopped, within `timeout` (a dying tracer's
// threads are let go as it exits, a living one's when it detaches).
::testing::AssertionResult untraced_and_running(pid_t pid, std::chrono::milliseconds timeout = 5s);

// Asks every process in `pids` (fault_target) to check itself (SIGUSR1) and waits for each one's
// answer in `out`: it must say ok, and every one of its threads must have made progress since
// the last check (`progress`, updated; asked again until `timeout`). Fails naming the process
// that failed, did not answer, or has a thread that is stuck.
::testing::AssertionResult self_checks(const TestProcess& p, const std::vector<pid_t>& pids,
                                       std::map<pid_t, long>& progress,
                                       std::chrono::milliseconds timeout = 10s);

// The target and its descendants, target first.
std::vector<pid_t> tree_of(pid_t pid);

// Waits until none of `pids` exists (reaping those that came to us), up to `timeout`.
bool all_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout);

// Generation directories of a store, oldest first.
std::vector<fs::path> generations(const fs::path& store);

}  // namespace rel
