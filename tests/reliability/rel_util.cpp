#include "rel_util.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace rel {

bool full_run() {
  const char* v = std::getenv("CKPT_RELIABILITY_FULL");
  return v && *v && std::string(v) != "0";
}

long scaled(long n, long full) {
  return full_run() ? full : n;
}

CkptResult run_ckpt_env(const std::vector<std::string>& args, const std::vector<std::string>& env,
                        std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {ckpt_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, env, timeout);
}

std::vector<std::string> read_points(const fs::path& count_file) {
  std::vector<std::string> names;
  std::ifstream in(count_file);
  std::string line;
  while (std::getline(in, line)) {
    // "N PID WHAT DETAIL"
    auto a = line.find(' '), b = line.find(' ', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    names.push_back(line.substr(b + 1));
  }
  return names;
}

std::vector<long> choose_points(const std::vector<std::string>& names, size_t want) {
  constexpr size_t kLast = 8;
  size_t stride = std::max<size_t>(1, names.size() / std::max<size_t>(want, 1)) | 1;
  std::set<long> at;
  std::set<std::string> kinds;
  for (size_t i = 0; i < names.size(); ++i) {
    long n = static_cast<long>(i) + 1;
    if (full_run() || i % stride == 0 || i + kLast >= names.size()) at.insert(n);
    if (kinds.insert(names[i]).second) at.insert(n);
  }
  return {at.begin(), at.end()};
}

std::string summarize_kinds(const std::vector<std::string>& names, const std::vector<long>& at) {
  std::map<std::string, int> count;
  for (long n : at)
    if (n >= 1 && static_cast<size_t>(n) <= names.size()) ++count[names[n - 1]];
  std::ostringstream out;
  for (auto& [name, c] : count) out << "  " << c << " x " << name << "\n";
  return out.str();
}

::testing::AssertionResult untraced_and_running(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string problem;
  for (;;) {
    problem.clear();
    std::error_code ec;
    fs::path tasks = fs::path("/proc") / std::to_string(pid) / "task";
    if (!fs::exists(tasks, ec)) return ::testing::AssertionFailure() << "pid " << pid << " is gone";
    for (auto& t : fs::directory_iterator(tasks, ec)) {
      std::ifstream in(t.path() / "status");
      std::string line, state, tracer;
      while (std::getline(in, line)) {
        if (line.rfind("State:", 0) == 0) state = line.substr(7);
        if (line.rfind("TracerPid:", 0) == 0) tracer = line.substr(11);
      }
      if (state.empty()) continue;  // exited meanwhile
      if (tracer != "0")
        problem = "thread " + t.path().filename().string() + " is traced by " + tracer;
      else if (state[0] == 't' || state[0] == 'T')
        problem = "thread " + t.path().filename().string() + " is stopped: " + state;
      else if (state[0] == 'Z' || state[0] == 'X')
        problem = "thread " + t.path().filename().string() + " is dead: " + state;
      if (!problem.empty()) break;
    }
    if (problem.empty()) return ::testing::AssertionSuccess();
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure() << "pid " << pid << ": " << problem;
    sleep_for(10ms);
  }
}

namespace {

struct Answer {
  int lines = 0;
  bool failed = false;
  long progress = -1;
  std::string last;
};

// The answers of `pid` so far: "CHECK PID N ok PROGRESS" or "FAIL PID ...".
Answer answers_of(const std::string& out, pid_t pid) {
  Answer a;
  std::istringstream in(out);
  std::string line, word;
  std::string id = std::to_string(pid);
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string kind, who;
    l >> kind >> who;
    if (who != id || (kind != "CHECK" && kind != "FAIL")) continue;
    ++a.lines;
    a.last = line;
    a.failed = a.failed || kind == "FAIL";
    if (kind == "CHECK") {
      long n = 0, progress = 0;
      l >> n >> word >> progress;
      a.progress = progress;
    }
  }
  return a;
}

}  // namespace

::testing::AssertionResult self_checks(const TestProcess& p, const std::vector<pid_t>& pids,
                                       std::map<pid_t, long>& progress,
                                       std::chrono::milliseconds timeout) {
  std::string out = p.out();
  std::map<pid_t, int> before;
  for (pid_t pid : pids) before[pid] = answers_of(out, pid).lines;
  for (pid_t pid : pids)
    if (::kill(pid, SIGUSR1) < 0)
      return ::testing::AssertionFailure() << "pid " << pid << " is gone\n" << p.output();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (pid_t pid : pids) {
    for (;;) {
      Answer a;
      while ((a = answers_of(p.out(), pid)).lines <= before[pid]) {
        if (std::chrono::steady_clock::now() > deadline)
          return ::testing::AssertionFailure()
                 << "pid " << pid << " did not answer its check (state "
                 << status_field(pid, "State") << ", blocked " << status_field(pid, "SigBlk")
                 << ")\n"
                 << p.output();
        sleep_for(5ms);
      }
      if (a.failed) return ::testing::AssertionFailure() << a.last << "\n" << p.output();
      if (!progress.count(pid) || a.progress > progress[pid]) {
        progress[pid] = a.progress;
        break;
      }
      // Its slowest thread has not made a round since the last check: ask again for a while.
      if (std::chrono::steady_clock::now() > deadline)
        return ::testing::AssertionFailure()
               << "pid " << pid << ": a thread is stuck (its slowest made " << a.progress
               << " rounds, as at the check before)\n"
               << p.output();
      before[pid] = a.lines;
      sleep_for(20ms);
      ::kill(pid, SIGUSR1);
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<pid_t> tree_of(pid_t pid) {
  std::vector<pid_t> out{pid};
  for (pid_t d : descendants(pid)) out.push_back(d);
  return out;
}

bool all_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool any = false;
    for (pid_t pid : pids) {
      ::waitpid(pid, nullptr, WNOHANG | __WALL);
      if (fs::exists(fs::path("/proc") / std::to_string(pid))) any = true;
    }
    // Orphans of a killed restorer come to us, the subreaper: reap whatever has ended.
    while (::waitpid(-1, nullptr, WNOHANG | __WALL) > 0) {
    }
    if (!any) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    sleep_for(5ms);
  }
}

std::vector<fs::path> generations(const fs::path& store) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(store, ec))
    if (e.path().filename().string().rfind("gen-", 0) == 0) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace rel
