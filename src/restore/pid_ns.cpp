#include "restore/pid_ns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "common/child_process.hpp"
#include "common/fs_util.hpp"
#include "common/log.hpp"
#include "common/scoped_fd.hpp"
#include "proc/pid_namespace.hpp"
#include "proc/proc_file.hpp"
#include "proc/status.hpp"
#include "proc/task.hpp"
#include "restore/spawn.hpp"

namespace ckpt::pid_ns {
namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

// What the init tells its caller: "ok PID TOOK_NS GENERATION" and "skip ID\tMESSAGE" lines, or
// "error ERRNO\tMESSAGE"; then "end". After a lazy restore, once the memory is in, one more line:
// "lazy ok TOOK_NS FAULTS ON_FAULT PREFETCHED ZERO" or "lazy error ERRNO\tMESSAGE".
std::string report_of(const Result<RestoreResult>& r) {
  if (!r.ok())
    return fmt::format("error {}\t{}\nend\n", r.error().errnum, one_line(r.error().message));
  std::string out = fmt::format("ok {} {} {}\n", r->pid, r->took.count(), r->generation.id);
  for (auto& p : r->skipped) out += fmt::format("skip {}\t{}\n", p.id, one_line(p.message));
  return out + "end\n";
}

std::string lazy_report_of(lazy_pages::Server& server) {
  Status st = server.wait();
  if (!st.ok())
    return fmt::format("lazy error {}\t{}\n", st.error().errnum, one_line(st.error().message));
  auto s = server.stats();
  return fmt::format("lazy ok {} {} {} {} {}\n", s.took.count(), s.faults, s.pages_on_fault,
                     s.pages_prefetched, s.zero_pages);
}

volatile sig_atomic_t root_pid = 0;

// An init gets only the signals it handles: those a process sends it go on to the root (a
// terminal's go to the terminal's foreground group, which the root may be in already).
void pass_on(int sig, siginfo_t* info, void*) {
  if (info->si_code == SI_USER && root_pid > 0) ::kill(root_pid, sig);
}

// Whether a process other than us is in the namespace (our /proc is the namespace's): one that
// entered it from outside is no child of ours.
bool others_in_namespace() {
  auto pids = proc::list_pids();
  return pids.ok() && !pids->empty() && pids->back() > 1;
}

// Reaps every process of the namespace (orphans come here) until none is left; the root's
// status as a shell reports it. A process that entered the namespace (ckpt's dumper, which
// kills the tree and must still report it) is waited for too: our end would kill it.
int reap_until_empty(pid_t root) {
  int code = 0;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(-1, &status, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && !others_in_namespace()) return code;
    if (r < 0) ::usleep(10'000);  // ECHILD, but not alone
    if (r == root) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

[[noreturn]] void run_init(const image::Store& store, const RestoreOptions& opts, int report) {
  // The restore reads /proc/PID of the processes it makes, by their PIDs in the new namespace.
  Status proc = proc::mount_own_proc();
  Result<RestoreResult> r =
      proc.ok() ? restore_process(store, opts)
                : Result<RestoreResult>(proc.error().wrap("restore in a new PID namespace"));
  std::string text = report_of(r);
  (void)write_all(report, std::as_bytes(std::span(text)), "report");
  if (!r.ok() || opts.dry_run) ::_exit(r.ok() ? 0 : 1);
  // The init serves the memory of a lazy restore (its fds and thread are here) until it is in.
  if (opts.lazy) {
    text = r->lazy ? lazy_report_of(*r->lazy) : "lazy ok 0 0 0 0 0\n";
    (void)write_all(report, std::as_bytes(std::span(text)), "report");
    r->lazy.reset();
  }
  root_pid = r->pid;
  struct sigaction sa {};
  sa.sa_sigaction = pass_on;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  for (int sig : {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2})
    ::sigaction(sig, &sa, nullptr);
  // A lazy restore's caller blocks those while the memory arrives; the init takes them now.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Nothing of the caller's is kept open: a pipe the caller reads to its end must see it.
  ::close_range(0, ~0U, 0);
  ::_exit(reap_until_empty(r->pid));
}

// Until the "end" line (or the init's end); with `whole`, until the init closes its end.
Result<std::string> read_report(int fd, bool whole) {
  std::string out;
  char buf[4096];
  for (;;) {
    if (!whole && (out == "end\n" || out.ends_with("\nend\n"))) return out;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read the report of the namespace's init");
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

Result<RestoreResult> parse_report(const std::string& text, pid_t init) {
  std::istringstream in(text);
  std::string line;
  RestoreResult r;
  bool ok = false;
  while (std::getline(in, line)) {
    if (line.starts_with("error ")) {
      size_t tab = line.find('\t');
      int errnum = std::atoi(line.c_str() + 6);
      return make_error(tab == std::string::npos ? line : line.substr(tab + 1), errnum);
    }
    if (line.starts_with("ok ")) {
      std::istringstream f(line.substr(3));
      long long took = 0;
      f >> r.pid >> took >> r.generation.id;
      r.took = std::chrono::nanoseconds(took);
      ok = r.pid > 0;
    } else if (line.starts_with("skip ")) {
      size_t tab = line.find('\t');
      if (tab != std::string::npos)
        r.skipped.push_back({line.substr(5, tab - 5), line.substr(tab + 1)});
    }
  }
  if (!ok)
    return errorf("restore in a new PID namespace: its init (pid {}) died without a word", init);
  return r;
}

// The root is the init's child: the one whose innermost PID is the image's.
Result<pid_t> outer_pid_of(pid_t init, pid_t inner) {
  CKPT_TRY_ASSIGN(auto kids, proc::list_children(init));
  for (pid_t k : kids) {
    auto st = proc::read_status(k);
    if (st.ok() && !st->ns_tgid.empty() && st->ns_tgid.back() == inner) return k;
  }
  return errorf("restore in a new PID namespace: pid {} there is not found from outside", inner);
}

// A PID for the process that finishes the restore inside the namespace: one the image does not
// use, high, where the processes' own children are least likely to look soon.
pid_t builder_pid(const PuppetPlan& plan) {
  std::set<pid_t> used;
  for (auto& p : plan.processes) {
    used.insert(p.pid);
    for (auto& t : p.rec->threads) used.insert(t.tid);
  }
  pid_t pid = 32767;
  int err = 0;
  if (auto text = proc::read_text_file("/proc/sys/kernel/pid_max", &err); text.ok())
    pid = std::max(2, std::atoi(text->c_str()) - 1);
  while (pid > 1 && used.count(pid)) --pid;
  return pid;
}

[[noreturn]] void run_builder(const PuppetPlan& plan, SpawnedPuppets spawned,
                              const BuildPuppets& build, int report) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  Status proc = proc::mount_own_proc();
  Result<RestoreResult> r = make_error("internal error");
  if (!proc.ok()) {
    r = proc.error().wrap("restore in a new PID namespace");
  } else {
    auto puppets = PuppetTree::take_over(plan, std::move(spawned));
    r = puppets.ok() ? build(std::move(*puppets)) : Result<RestoreResult>(puppets.error());
  }
  std::string text = report_of(r);
  (void)write_all(report, std::as_bytes(std::span(text)), "report");
  ::_exit(r.ok() ? 0 : 1);
}

// Kills the root (from outside its namespace, which a namespace's init cannot ignore: every
// process there dies with it) and reaps it, unless released.
struct RootGuard {
  pid_t pid = 0;
  ~RootGuard() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    (void)wait_end(pid);
  }
};

// This thread's next children go into a new PID namespace until leave() (or the end of scope)
// sets its own back. In a user namespace of our own (an unprivileged restore) the way back is
// closed (EPERM): harmless, nothing else is forked here then.
class ChildrenInNewNamespace {
 public:
  static Result<ChildrenInNewNamespace> enter() {
    ChildrenInNewNamespace c;
    c.own_.reset(::open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC));
    if (!c.own_) return sys_error("open /proc/thread-self/ns/pid");
    if (::unshare(CLONE_NEWPID) < 0)
      return sys_error("unshare(CLONE_NEWPID) for a new PID namespace");
    return c;
  }
  ChildrenInNewNamespace(ChildrenInNewNamespace&&) noexcept = default;
  ~ChildrenInNewNamespace() { leave(); }
  void leave() {
    if (!own_) return;
    if (::setns(own_.get(), CLONE_NEWPID) < 0 && errno != EPERM)
      log::warn("restore", "back to our own PID namespace for children: {}", std::strerror(errno));
    own_.reset();
  }

 private:
  ChildrenInNewNamespace() = default;
  ScopedFd own_;
};

}  // namespace

Result<RestoreResult> restore_as_init(const PuppetPlan& plan, const BuildPuppets& build) {
  CKPT_TRY_ASSIGN(ChildrenInNewNamespace in_ns, ChildrenInNewNamespace::enter());
  // The first process created in the namespace is its init: the root.
  CKPT_TRY_ASSIGN(SpawnedPuppets spawned, PuppetTree::spawn(plan));
  RootGuard root{spawned.root};
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd rd(p[0]), wr(p[1]);
  auto builder = clone_with_pid(builder_pid(plan));
  if (builder.ok() && *builder == 0) {
    rd.reset();
    run_builder(plan, std::move(spawned), build, wr.get());
  }
  in_ns.leave();
  if (!builder.ok()) return builder.error().wrap("restore in a new PID namespace");
  wr.reset();
  spawned.reports.clear();
  auto text = read_report(rd.get(), false);
  auto r = text.ok() ? parse_report(*text, *builder) : Result<RestoreResult>(text.error());
  (void)wait_end(*builder);
  if (!r.ok()) return r.error();
  r->ns_pid = r->pid;
  r->pid = std::exchange(root.pid, 0);
  return r;
}

Result<Restored> restore(const image::Store& store, const RestoreOptions& opts) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
  ScopedFd rd(p[0]), wr(p[1]);
  auto made = fork_into_new_pid_ns();
  if (made.ok() && *made == 0) {
    rd.reset();
    run_init(store, opts, wr.get());
  }
  if (!made.ok()) return made.error().wrap("make the init of a new PID namespace");
  pid_t init = *made;
  wr.reset();
  auto text = read_report(rd.get(), false);
  auto r = text.ok() ? parse_report(*text, init) : Result<RestoreResult>(text.error());
  if (!r.ok()) {
    (void)wait_end(init);
    return r.error();
  }
  Restored out{*r, r->pid, init, {}};
  if (opts.dry_run) {
    (void)wait_end(init);
    return out;
  }
  if (opts.lazy) out.lazy_report = std::move(rd);
  CKPT_TRY_ASSIGN(out.result.pid, outer_pid_of(init, out.inner_pid));
  return out;
}

Result<lazy_pages::Stats> wait_lazy(Restored& r) {
  CKPT_TRY_ASSIGN(std::string text, read_report(r.lazy_report.get(), true));
  r.lazy_report.reset();
  std::istringstream in(text);
  std::string word, state;
  in >> word >> state;
  if (word == "lazy" && state == "ok") {
    lazy_pages::Stats s;
    long long took = 0;
    in >> took >> s.faults >> s.pages_on_fault >> s.pages_prefetched >> s.zero_pages;
    s.took = std::chrono::nanoseconds(took);
    if (in) return s;
  }
  if (word == "lazy" && state == "error") {
    int errnum = 0;
    in >> errnum;
    size_t tab = text.find('\t');
    std::string message = tab == std::string::npos ? text : text.substr(tab + 1);
    if (!message.empty() && message.back() == '\n') message.pop_back();
    return make_error(message, errnum);
  }
  return errorf(
      "lazy restore in a new PID namespace: its init (pid {}) died before the memory "
      "was in",
      r.init);
}

}  // namespace ckpt::pid_ns
