#include "e2e_util.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace e2e {

void sleep_for(std::chrono::milliseconds d) {
  std::this_thread::sleep_for(d);
}

pid_t spawn(const SpawnSpec& spec) {
  std::vector<char*> argv;
  for (auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  for (auto& e : spec.extra_env) env_store.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  if (pid != 0) return pid;
  // Child: move the chosen fds out of the way first, so that fds[i] == j for j < i cannot clash.
  int high[3];
  for (int i = 0; i < 3; ++i) {
    high[i] = spec.fds[i] < 0 ? -1 : ::fcntl(spec.fds[i], F_DUPFD, 1000);
  }
  for (int i = 0; i < 3; ++i) {
    if (high[i] >= 0)
      ::dup2(high[i], i);
    else
      ::close(i);
  }
  ::close_range(3, ~0U, 0);
  if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) < 0) ::_exit(126);
  ::signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(argv[0], argv.data(), envp.data());
  ::_exit(127);
}

void become_subreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
    throw std::runtime_error("PR_SET_CHILD_SUBREAPER: " + std::string(strerror(errno)));
}

std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds timeout,
                              const std::function<void()>& before_kill) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG | __WALL);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (std::chrono::steady_clock::now() > deadline) {
      if (before_kill) before_kill();
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, __WALL);
      return std::nullopt;
    }
    sleep_for(2ms);
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

int CkptResult::exit_code() const {
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string CkptResult::describe() const {
  return describe_status(status) + "\nstdout: " + out + "\nstderr: " + err;
}

long point_number(const fs::path& count_file, const std::string& name) {
  std::ifstream in(count_file);
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find(' '), second = line.find(' ', first + 1);
    if (second != std::string::npos && line.substr(second + 1) == name)
      return std::stol(line.substr(0, first));
  }
  return 0;
}

size_t count_from(const std::string& text, const std::string& word, size_t from) {
  size_t n = 0;
  for (size_t at = text.find(word, from); at != std::string::npos; at = text.find(word, at + 1))
    ++n;
  return n;
}

const std::string& ckpt_path() {
  static const std::string path = CKPT_CLI_PATH;
  return path;
}

int open_or_die(const fs::path& p, int flags, mode_t mode) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("open " + p.string() + ": " + strerror(errno));
  return fd;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CkptResult run_ckpt(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {ckpt_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

CkptResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  return run_command(argv, {}, timeout);
}

namespace {

// Where a command that ran out of time and its descendants (a dumper, a guard, nft) are stuck:
// for the failure message, read before they are killed.
std::string where_stuck(pid_t pid) {
  std::vector<pid_t> all = {pid};
  auto below = descendants(pid);
  all.insert(all.end(), below.begin(), below.end());
  std::string out;
  for (pid_t p : all) {
    auto proc = fs::path("/proc") / std::to_string(p);
    std::string comm = read_text(proc / "comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    std::string stack = read_text(proc / "stack");
    if (stack.size() > 600) stack.resize(600);
    out += "\n  pid " + std::to_string(p) + " (" + comm + ") " + status_field(p, "State") +
           ", wchan " + read_text(proc / "wchan") + ", syscall " + read_text(proc / "syscall") +
           stack;
  }
  return out;
}

}  // namespace

CkptResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       std::chrono::milliseconds timeout) {
  TempDir dir;
  int in = open_or_die("/dev/null", O_RDONLY);
  int out = open_or_die(dir / "out", O_WRONLY | O_CREAT | O_TRUNC);
  int err = open_or_die(dir / "err", O_WRONLY | O_CREAT | O_TRUNC);
  SpawnSpec spec;
  spec.argv = argv;
  spec.fds[0] = in;
  spec.fds[1] = out;
  spec.fds[2] = err;
  spec.extra_env = env;
  pid_t pid = spawn(spec);
  ::close(in);
  ::close(out);
  ::close(err);
  CkptResult r;
  std::string stuck;
  auto st = wait_child(pid, timeout, [&] { stuck = where_stuck(pid); });
  r.status = st ? *st : -1;
  r.out = read_text(dir / "out");
  r.err = read_text(dir / "err");
  if (!st) r.err += "\n(" + argv[0] + " timed out and was killed; it stood so:" + stuck + ")";
  return r;
}

bool alive(pid_t pid) {
  if (::kill(pid, 0) < 0) return false;
  std::string state = status_field(pid, "State");
  return !state.empty() && state[0] != 'Z' && state[0] != 'X';
}

::testing::AssertionResult left_running_untraced(pid_t pid, bool sleeping) {
  if (!alive(pid)) return ::testing::AssertionFailure() << "pid " << pid << " is gone";
  std::string tracer = status_field(pid, "TracerPid");
  if (tracer != "0")
    return ::testing::AssertionFailure() << "pid " << pid << " is traced by " << tracer;
  std::string state = status_field(pid, "State");
  if (sleeping && (state.empty() || state[0] != 'S'))
    return ::testing::AssertionFailure() << "pid " << pid << " is in state " << state;
  return ::testing::AssertionSuccess();
}

bool wait_for_text(const fs::path& file, const std::string& text, pid_t pid,
                   std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(file).find(text) != std::string::npos) return true;
    if (!alive(pid)) return read_text(file).find(text) != std::string::npos;
    sleep_for(5ms);
  }
  return false;
}

namespace {

std::string read_proc(pid_t pid, const std::string& name) {
  return read_text(fs::path("/proc") / std::to_string(pid) / name);
}

std::string link_of(const fs::path& p) {
  std::error_code ec;
  auto target = fs::read_symlink(p, ec);
  return ec ? "<" + ec.message() + ">" : target.string();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::map<std::string, std::string> parse_status(const std::string& text) {
  std::map<std::string, std::string> out;
  for (auto& l : lines(text)) {
    auto colon = l.find(':');
    if (colon == std::string::npos) continue;
    auto v = l.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    out[l.substr(0, colon)] = v;
  }
  return out;
}

// "start-end perms offset path": device and inode numbers may legitimately differ.
std::string normalise_map_line(const std::string& l) {
  std::istringstream in(l);
  std::string range, perms, offset, dev, inode, path;
  in >> range >> perms >> offset >> dev >> inode;
  std::getline(in, path);
  path.erase(0, path.find_first_not_of(' '));
  return range + " " + perms + " " + offset + " " + path;
}

std::vector<int> numeric_entries(const fs::path& dir) {
  std::vector<int> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit))
      out.push_back(std::stoi(name));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string fdinfo_summary(pid_t pid, int fd) {
  auto st = parse_status(read_proc(pid, "fdinfo/" + std::to_string(fd)));
  return "pos=" + st["pos"] + " flags=" + st["flags"];
}

// Fields of /proc/PID/task/TID/stat after the name (which may hold spaces and parentheses):
// [0] is field 3, the state.
std::vector<std::string> stat_fields(const std::string& text) {
  std::vector<std::string> out;
  auto close = text.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream in(text.substr(close + 1));
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

struct SchedAttr {  // the kernel's struct sched_attr
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
  uint32_t util_min, util_max;
};

// What the kernel tells anyone about a thread's scheduling, I/O priority, capabilities and ids.
std::string thread_settings(pid_t pid, int tid) {
  fs::path dir = fs::path("/proc") / std::to_string(pid) / "task" / std::to_string(tid);
  auto f = stat_fields(read_text(dir / "stat"));
  auto field = [&](size_t n) { return n - 3 < f.size() ? f[n - 3] : std::string("?"); };
  auto st = parse_status(read_text(dir / "status"));
  std::ostringstream out;
  out << tid << " priority=" << field(18) << " nice=" << field(19) << " rt_priority=" << field(40)
      << " policy=" << field(41) << " cpus=" << st["Cpus_allowed_list"]
      << " mems=" << st["Mems_allowed_list"];
  for (auto* k : {"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                  "NoNewPrivs", "Seccomp", "Seccomp_filters"})
    out << " " << k << "=" << st[k];
  SchedAttr a{};
  if (::syscall(SYS_sched_getattr, tid, &a, sizeof a, 0) == 0)
    out << " sched=" << a.policy << "/" << a.flags << "/" << a.nice << "/" << a.priority << "/"
        << a.runtime << "/" << a.deadline << "/" << a.period << "/" << a.util_min << "/"
        << a.util_max;
  else
    out << " sched=<" << strerror(errno) << ">";
  errno = 0;
  long io = ::syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, tid);
  out << " ioprio=" << (io < 0 ? std::string(strerror(errno)) : std::to_string(io));
  return out.str();
}

}  // namespace

std::string status_field(pid_t pid, const std::string& key) {
  auto st = parse_status(read_proc(pid, "status"));
  auto it = st.find(key);
  return it == st.end() ? "" : it->second;
}

std::vector<pid_t> children_of_self() {
  std::vector<pid_t> out;
  for (int tid : numeric_entries("/proc/self/task")) {
    std::istringstream in(read_text("/proc/self/task/" + std::to_string(tid) + "/children"));
    for (pid_t c; in >> c;) out.push_back(c);
  }
  return out;
}

std::vector<pid_t> live_children_of_self() {
  std::vector<pid_t> out;
  for (pid_t c : children_of_self()) {
    // The snapshot process of a --leave-running dump is orphaned to this subreaper once its
    // intermediate parent is gone, and ends here as a zombie: reaped, not counted.
    if (status_field(c, "State").starts_with("Z") && ::waitpid(c, nullptr, WNOHANG) == c) continue;
    out.push_back(c);
  }
  return out;
}

std::vector<pid_t> descendants(pid_t pid) {
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {pid};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    fs::path task_dir = fs::path("/proc") / std::to_string(p) / "task";
    for (int tid : numeric_entries(task_dir)) {
      std::istringstream in(read_text(task_dir / std::to_string(tid) / "children"));
      for (pid_t c; in >> c;) {
        out.push_back(c);
        todo.push_back(c);
      }
    }
  }
  return out;
}

std::map<pid_t, pid_t> parents_of(const std::vector<pid_t>& pids) {
  std::map<pid_t, pid_t> out;
  for (pid_t p : pids) {
    std::string ppid = status_field(p, "PPid");
    out[p] = ppid.empty() ? 0 : static_cast<pid_t>(std::stol(ppid));
  }
  return out;
}

namespace {

// True once `pid` no longer exists (reaping it when it is our zombie).
bool gone(pid_t pid) {
  int status;
  pid_t r = ::waitpid(pid, &status, WNOHANG | __WALL);
  if (r == pid) return true;
  // Not our child (yet): it may still be on its way to us as an orphan of a dying parent.
  return r < 0 && errno == ECHILD && !fs::exists(fs::path("/proc") / std::to_string(pid));
}

}  // namespace

::testing::AssertionResult reap_all(const std::vector<pid_t>& pids, const std::vector<pid_t>& keep,
                                    std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<pid_t> left = pids;
  auto listed = [](const std::vector<pid_t>& v, pid_t p) {
    return std::find(v.begin(), v.end(), p) != v.end();
  };
  for (;;) {
    // A process the tree forked after `pids` was listed reaches us only as an orphan.
    for (pid_t c : children_of_self())
      if (!listed(keep, c) && !listed(left, c)) left.push_back(c);
    std::erase_if(left, gone);
    if (left.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      auto failure = ::testing::AssertionFailure()
                     << "pid " << left.front() << " (state '" << status_field(left.front(), "State")
                     << "', parent " << status_field(left.front(), "PPid") << ") is still there";
      for (pid_t p : left) ::kill(p, SIGKILL);
      auto cleanup_deadline = std::chrono::steady_clock::now() + 2s;
      while (!left.empty() && std::chrono::steady_clock::now() < cleanup_deadline) {
        std::erase_if(left, gone);
        sleep_for(2ms);
      }
      return failure;
    }
    sleep_for(2ms);
  }
  return ::testing::AssertionSuccess();
}

ProcSnapshot snapshot(pid_t pid) {
  ProcSnapshot s;
  for (auto& l : lines(read_proc(pid, "maps"))) s.maps.push_back(normalise_map_line(l));
  auto st = parse_status(read_proc(pid, "status"));
  static const char* keys[] = {
      "Name",    "Umask",  "Tgid",   "Pid",        "PPid",    "Uid",    "Gid",    "Groups",
      "Threads", "SigPnd", "ShdPnd", "SigBlk",     "SigIgn",  "SigCgt", "CapInh", "CapPrm",
      "CapEff",  "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "VmSize", "VmLck",  "THP_enabled"};
  for (auto* k : keys) s.status[k] = st[k];
  std::map<std::string, int> pipe_ids;  // "pipe:[123]", "socket:[7]" -> order of appearance
  fs::path fd_dir = fs::path("/proc") / std::to_string(pid) / "fd";
  for (int fd : numeric_entries(fd_dir)) {
    std::string target = link_of(fd_dir / std::to_string(fd));
    if (target.rfind("pipe:[", 0) == 0 || target.rfind("socket:[", 0) == 0 ||
        target.rfind("anon_inode:", 0) == 0) {
      auto [it, added] = pipe_ids.emplace(target, static_cast<int>(pipe_ids.size()));
      target = target.substr(0, target.find('[')) + "#" + std::to_string(it->second);
    }
    s.fds.push_back(std::to_string(fd) + " -> " + target + " " + fdinfo_summary(pid, fd));
  }
  fs::path task_dir = fs::path("/proc") / std::to_string(pid) / "task";
  for (int tid : numeric_entries(task_dir)) {
    auto ts = parse_status(read_text(task_dir / std::to_string(tid) / "status"));
    s.threads.push_back(std::to_string(tid) + " name=" + ts["Name"] + " blocked=" + ts["SigBlk"] +
                        " pending=" + ts["SigPnd"]);
    s.thread_settings.push_back(thread_settings(pid, tid));
  }
  for (auto* f : {"cmdline", "environ", "limits", "personality", "oom_score_adj", "timerslack_ns"})
    s.misc[f] = read_proc(pid, f);
  for (auto* f : {"exe", "cwd", "root"})
    s.misc[f] = link_of(fs::path("/proc") / std::to_string(pid) / f);
  return s;
}

namespace {

void diff_lists(const std::string& what, const std::vector<std::string>& a,
                const std::vector<std::string>& b, std::vector<std::string>& out) {
  std::set<std::string> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  for (auto& l : a)
    if (!sb.count(l)) out.push_back(what + " lost: " + l);
  for (auto& l : b)
    if (!sa.count(l)) out.push_back(what + " new: " + l);
}

}  // namespace

std::vector<std::string> compare(const ProcSnapshot& before, const ProcSnapshot& after) {
  std::vector<std::string> out;
  diff_lists("maps", before.maps, after.maps, out);
  diff_lists("fd", before.fds, after.fds, out);
  diff_lists("thread", before.threads, after.threads, out);
  diff_lists("thread settings", before.thread_settings, after.thread_settings, out);
  for (auto& [k, v] : before.status) {
    auto it = after.status.find(k);
    std::string now = it == after.status.end() ? "" : it->second;
    if (now != v) out.push_back("status " + k + ": '" + v + "' -> '" + now + "'");
  }
  for (auto& [k, v] : before.misc) {
    auto it = after.misc.find(k);
    if (it == after.misc.end() || it->second != v)
      out.push_back("/proc/PID/" + k + " changed: '" + v + "' -> '" +
                    (it == after.misc.end() ? "" : it->second) + "'");
  }
  return out;
}

ProcSnapshot settled_snapshot(pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + 2s;
  ProcSnapshot last = snapshot(pid);
  while (std::chrono::steady_clock::now() < deadline) {
    sleep_for(10ms);
    ProcSnapshot now = snapshot(pid);
    bool same = compare(last, now).empty();
    last = std::move(now);
    if (same) break;
  }
  return last;
}

std::vector<std::string> compare_settled(const ProcSnapshot& before, pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + 2s;
  auto diff = compare(before, snapshot(pid));
  while (!diff.empty() && std::chrono::steady_clock::now() < deadline) {
    sleep_for(10ms);
    diff = compare(before, snapshot(pid));
  }
  return diff;
}

size_t line_count(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n + (!s.empty() && s.back() != '\n');
}

}  // namespace e2e
