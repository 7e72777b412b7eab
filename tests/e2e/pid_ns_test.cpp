// PID namespaces (issue 11, point 12). `ckpt restore --pid-ns` brings a tree back inside a new
// PID namespace with the PIDs it had, so copies can run while the original keeps those PIDs on the
// host: programs/pid_view.c (a process and its child) checks that getpid(), getppid() and
// /proc/<own PID> are as before. A tree whose root is the init of a PID namespace of its own
// (helpers/ns_init.c) is dumped from outside or inside and comes back as the init of a new one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <regex>

#include <nlohmann/json.hpp>

#include "test_process.hpp"

namespace e2e {
namespace {

struct InNamespace {
  pid_t inner = 0, outer = 0, init = 0;
};

// "ckpt: restored as pid X in a new PID namespace (pid Y outside, its init Z)"
std::optional<InNamespace> parse_restored(const std::string& err) {
  std::smatch m;
  static const std::regex line(
      R"(restored as pid (\d+) in a new PID namespace \(pid (\d+) outside, its init (\d+)\))");
  if (!std::regex_search(err, m, line)) return std::nullopt;
  return InNamespace{std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3])};
}

class PidNamespace : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_F(PidNamespace, TwoCopiesRunBesideTheOriginalWithItsPids) {
  TestProcess p({program_path("pid_view")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  std::vector<InNamespace> copies;
  for (int k = 0; k < 2; ++k) {
    auto r = run_ckpt({"restore", "-D", p.store().string(), "--pid-ns", "--detach"});
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    auto c = parse_restored(r.err);
    ASSERT_TRUE(c.has_value()) << r.err;
    EXPECT_EQ(c->inner, p.pid());
    EXPECT_NE(c->outer, p.pid());
    EXPECT_EQ(r.out, std::to_string(c->outer) + "\n") << "--detach prints the PID outside";
    EXPECT_EQ(status_field(c->outer, "NSpid"),
              std::to_string(c->outer) + "\t" + std::to_string(p.pid()));
    EXPECT_EQ(status_field(c->outer, "PPid"), std::to_string(c->init));
    copies.push_back(*c);
  }
  ASSERT_TRUE(alive(p.pid())) << "the original runs on";
  // The first copy checks itself and ends: its init ends with its code.
  ::kill(copies[0].outer, SIGUSR2);
  auto st = wait_child(copies[0].init, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << p.output();
  // A signal sent to the init goes to the root; the init ends when the namespace is empty (the
  // root's orphaned child, now the init's, is killed here), with the root's code.
  ASSERT_EQ(::kill(copies[1].init, SIGTERM), 0);
  for (int i = 0; i < 500 && alive(copies[1].outer); ++i) sleep_for(10ms);
  EXPECT_FALSE(alive(copies[1].outer)) << "SIGTERM did not reach the root";
  for (pid_t left : descendants(copies[1].init)) ::kill(left, SIGKILL);
  st = wait_child(copies[1].init, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 143");
  EXPECT_TRUE(p.finish());
}

// A copy made with --pid-ns is itself dumped by its PID outside (from inside its namespace, its
// init left out) and gives a copy of the copy, with the same PIDs inside.
TEST_F(PidNamespace, ACopyIsDumpedByItsPidOutsideAndCopiedAgain) {
  TestProcess p({program_path("pid_view")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--pid-ns", "--detach"});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  auto copy = parse_restored(r.err);
  ASSERT_TRUE(copy.has_value()) << r.err;
  TempDir dir;
  auto store = (dir / "store").string();
  auto dumped = run_ckpt({"dump", "-t", std::to_string(copy->outer), "-D", store});
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  // The copy (and its child) died of the dump; its init ends once its namespace is empty.
  ASSERT_TRUE(wait_child(copy->init, 15s).has_value());
  r = run_ckpt({"restore", "-D", store, "--pid-ns", "--detach", "--accept-changed-files"});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  auto again = parse_restored(r.err);
  ASSERT_TRUE(again.has_value()) << r.err;
  EXPECT_EQ(again->inner, p.pid());
  size_t cut = p.out().size();
  ::kill(again->outer, SIGUSR2);
  auto st = wait_child(again->init, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << p.output();
  EXPECT_NE(p.out().find("PASS", cut), std::string::npos) << p.output();
  EXPECT_TRUE(alive(p.pid())) << "the original runs on";
  EXPECT_TRUE(p.finish());
}

// Lazily, the namespace's init serves the memory: the copy runs before its pages are in, and
// every page it checks is right.
TEST_F(PidNamespace, LazyCopyGetsItsMemoryFromTheInitWhileItRuns) {
  TestProcess p({program_path("lazy_reader"), "64"});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_EQ(::kill(p.pid(), SIGUSR1), 0);  // no forks: nothing transient to dump
  ASSERT_TRUE(wait_for_text(p.dir() / "stdout", "QUIET", p.pid(), 10s)) << p.output();
  ASSERT_TRUE(p.dump());
  size_t cut = p.out().size();
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--pid-ns", "--lazy", "--detach"}, 60s);
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  auto c = parse_restored(r.err);
  ASSERT_TRUE(c.has_value()) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("([0-9]+) pages on demand"))) << r.err;
  EXPECT_GT(std::stol(m[1].str()), 0) << r.err;
  for (int i = 0; i < 500 && p.out().find("ROUND", cut) == std::string::npos; ++i) sleep_for(10ms);
  ::kill(c->outer, SIGUSR2);
  auto st = wait_child(c->init, 30s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << p.output();
  EXPECT_NE(p.out().find("PASS", cut), std::string::npos) << p.output();
  EXPECT_EQ(p.out().find("FAIL", cut), std::string::npos) << p.output();
}

TEST_F(PidNamespace, JsonNamesBothPidsAndKillingTheInitEndsTheCopy) {
  TestProcess p({program_path("pid_view")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--pid-ns", "--detach", "--json"});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  ASSERT_TRUE(j.contains("pid_namespace")) << r.out;
  pid_t outer = j["pid"].get<pid_t>(), init = j["pid_namespace"]["init"].get<pid_t>();
  EXPECT_EQ(j["pid_namespace"]["pid"].get<pid_t>(), p.pid());
  EXPECT_EQ(status_field(outer, "NSpid"), std::to_string(outer) + "\t" + std::to_string(p.pid()));
  std::vector<pid_t> inside = descendants(init);
  ASSERT_EQ(inside.size(), 2u) << "the root and its child";
  ASSERT_EQ(::kill(init, SIGKILL), 0);
  auto st = wait_child(init, 15s);
  ASSERT_TRUE(st.has_value());
  for (int i = 0; i < 500 && (alive(inside[0]) || alive(inside[1])); ++i) sleep_for(10ms);
  EXPECT_FALSE(alive(inside[0]) || alive(inside[1])) << "the namespace died with its init";
  EXPECT_TRUE(alive(p.pid())) << "the original runs on";
  EXPECT_TRUE(p.finish());
}

// `prog` as the init of a PID namespace of its own (`unshare --pid --fork --mount-proc`, our
// child). Its output goes to `dir`/out through a shell that execs it, so that what unshare itself
// says (util-linux's unshare complains when its child is killed) does not change that file.
struct NsTree {
  pid_t unshare = 0, init = 0;
};
NsTree start_ns_init(const TempDir& dir, const std::string& prog) {
  SpawnSpec spec;
  spec.argv = {"/usr/bin/unshare",
               "--pid",
               "--fork",
               "--mount-proc",
               "/bin/sh",
               "-c",
               "exec \"$0\" >\"$E2E_DIR/out\" 2>&1",
               program_path(prog)};
  spec.extra_env = {"E2E_DIR=" + dir.path().string()};
  NsTree t;
  t.unshare = spawn(spec);
  EXPECT_TRUE(wait_for_text(dir / "out", "READY", t.unshare, 10s)) << read_text(dir / "out");
  for (pid_t k : descendants(t.unshare))
    if (status_field(k, "PPid") == std::to_string(t.unshare)) t.init = k;
  EXPECT_GT(t.init, 0);
  return t;
}

// "ckpt: restored as pid 1, the init of a new PID namespace (pid X outside)": X.
pid_t restored_init(const std::string& err) {
  std::smatch m;
  static const std::regex line(
      R"(restored as pid 1, the init of a new PID namespace \(pid (\d+) outside\))");
  return std::regex_search(err, m, line) ? std::stoi(m[1]) : 0;
}

// Sends the go signal to an init and expects it to pass: `child` (the init itself, which our
// subreaper adopts once ckpt ends, or the unshare above the original) ends with exit 0.
void expect_passes(pid_t init, const TempDir& dir, size_t cut, pid_t child = 0) {
  ASSERT_EQ(::kill(init, SIGUSR2), 0);
  auto st = wait_child(child ? child : init, 15s);
  ASSERT_TRUE(st.has_value());
  std::string out = read_text(dir / "out");
  EXPECT_EQ(describe_status(*st), "exit 0") << out;
  EXPECT_NE(out.find("PASS", cut), std::string::npos) << out;
  EXPECT_EQ(out.find("FAIL", cut), std::string::npos) << out;
}

// The init of a namespace, dumped from outside by its PID here (the dumper works from inside
// the namespace), is killed with its whole namespace; restored, it is PID 1 of a new one, with
// its worker, its orphan and /proc as before (helpers/ns_init.c checks them).
TEST_F(PidNamespace, ANamespaceInitDumpedFromOutsideComesBackAsTheInitOfANewOne) {
  TempDir dir;
  NsTree t = start_ns_init(dir, "ns_init");
  ASSERT_GT(t.init, 0);
  auto store = (dir / "store").string();
  auto dumped = run_ckpt({"dump", "-t", std::to_string(t.init), "-D", store});
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  EXPECT_FALSE(alive(t.init)) << "a dump that says it killed has killed, before it returns";
  auto gone = wait_child(t.unshare, 15s);
  ASSERT_TRUE(gone.has_value()) << "the namespace was not killed";
  size_t cut = read_text(dir / "out").size();
  auto r = run_ckpt({"restore", "-D", store, "--detach", "--json"});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  pid_t init = j["pid"].get<pid_t>();
  EXPECT_EQ(j["pid_namespace"]["pid"].get<pid_t>(), 1) << r.out;
  EXPECT_EQ(j["pid_namespace"]["init"].get<pid_t>(), init) << r.out;
  EXPECT_EQ(status_field(init, "NSpid"), std::to_string(init) + "\t1");
  EXPECT_EQ(descendants(init).size(), 2u) << "the worker and the orphan, nothing of ckpt";
  ASSERT_NO_FATAL_FAILURE(expect_passes(init, dir, cut));
}

// An unmodified shell as the namespace's init, forking `mv` and `sleep` all the time (the count
// file is replaced, never seen half written): after the dump
// (which kills it) and the restore it counts on from where it was, not from the start.
TEST_F(PidNamespace, AShellAsTheInitCountsOnAfterTheRestore) {
  TempDir dir;
  auto count = dir / "count";
  SpawnSpec spec;
  spec.argv = {
      "/usr/bin/unshare",
      "--pid",
      "--fork",
      "--mount-proc",
      "/bin/bash",
      "-c",
      "i=0; while :; do i=$((i+1)); echo $i >\"$0.t\"; mv \"$0.t\" \"$0\"; sleep 0.05; done",
      count.string()};
  pid_t unshare = spawn(spec);
  for (int i = 0; i < 500 && read_text(count).empty(); ++i) sleep_for(10ms);
  pid_t init = 0;
  for (pid_t k : descendants(unshare))
    if (status_field(k, "PPid") == std::to_string(unshare)) init = k;
  ASSERT_GT(init, 0);
  sleep_for(200ms);
  auto dumped = run_ckpt({"dump", "-t", std::to_string(init), "-D", (dir / "store").string()});
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  ASSERT_TRUE(wait_child(unshare, 15s).has_value());
  int at_dump = std::stoi(read_text(count));
  ASSERT_GT(at_dump, 1);
  auto r = run_ckpt({"restore", "-D", (dir / "store").string(), "--detach"});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  pid_t copy = restored_init(r.err);
  ASSERT_GT(copy, 0) << r.err;
  int now = at_dump;
  for (int i = 0; i < 500 && now < at_dump + 3; ++i) {
    sleep_for(10ms);
    auto text = read_text(count);
    if (!text.empty()) now = std::stoi(text);
  }
  EXPECT_GE(now, at_dump + 3) << "the restored shell does not count on from " << at_dump;
  ::kill(copy, SIGKILL);
  EXPECT_TRUE(wait_child(copy, 15s).has_value());
}

// Left running, the original keeps its namespace; copies get new ones, so several run at once
// with the same PIDs inside.
TEST_F(PidNamespace, CopiesOfANamespaceInitRunBesideTheOriginal) {
  TempDir dir;
  NsTree t = start_ns_init(dir, "ns_init");
  ASSERT_GT(t.init, 0);
  auto store = (dir / "store").string();
  auto dumped = run_ckpt({"dump", "-t", std::to_string(t.init), "-D", store, "--leave-running"});
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  EXPECT_EQ(status_field(t.init, "TracerPid"), "0");
  std::vector<pid_t> copies;
  for (int k = 0; k < 2; ++k) {
    auto r = run_ckpt({"restore", "-D", store, "--detach", "--accept-changed-files"});
    ASSERT_EQ(r.exit_code(), 0) << r.describe();
    pid_t c = restored_init(r.err);
    ASSERT_GT(c, 0) << r.err;
    EXPECT_EQ(r.out, std::to_string(c) + "\n") << "--detach prints the PID outside";
    copies.push_back(c);
  }
  auto lazy = run_ckpt({"restore", "-D", store, "--detach", "--accept-changed-files", "--lazy"});
  EXPECT_NE(lazy.exit_code(), 0);
  EXPECT_NE(lazy.err.find("--lazy is not supported yet for an image whose root is the init"),
            std::string::npos)
      << lazy.err;
  size_t cut = read_text(dir / "out").size();
  for (pid_t c : copies) ASSERT_NO_FATAL_FAILURE(expect_passes(c, dir, cut));
  ASSERT_NO_FATAL_FAILURE(expect_passes(t.init, dir, cut, t.unshare));
}

// Dumped from inside its namespace (nsenter, then `ckpt dump -t 1`), the image is the same kind:
// its root is PID 1, and it comes back as the init of a new namespace.
TEST_F(PidNamespace, FromInsideTheDumpWorksAndTheImageRestoresAsAnInit) {
  TempDir dir;
  NsTree t = start_ns_init(dir, "ns_init");
  ASSERT_GT(t.init, 0);
  auto store = (dir / "store").string();
  auto dumped =
      run_command({"/usr/bin/nsenter", "--pid", "--mount", "--target", std::to_string(t.init),
                   ckpt_path(), "dump", "-t", "1", "-D", store, "--leave-running"},
                  20s);
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  auto r = run_ckpt({"restore", "-D", store, "--pid-ns", "--detach", "--accept-changed-files"});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  pid_t c = restored_init(r.err);
  ASSERT_GT(c, 0) << r.err;
  size_t cut = read_text(dir / "out").size();
  ASSERT_NO_FATAL_FAILURE(expect_passes(c, dir, cut));
  ASSERT_NO_FATAL_FAILURE(expect_passes(t.init, dir, cut, t.unshare));
}

// What is not the init of a namespace just below is refused, and runs on untouched: a process
// inside that is not its init, and a process whose child is such an init (a tree reaching into
// a namespace it does not start).
TEST_F(PidNamespace, AProcessInsideANamespaceOrAboveOneIsRefusedAndRunsOn) {
  TempDir dir;
  NsTree t = start_ns_init(dir, "pid_view");
  ASSERT_GT(t.init, 0);
  std::vector<pid_t> kids = descendants(t.init);
  ASSERT_EQ(kids.size(), 1u);
  auto r = run_ckpt({"dump", "-t", std::to_string(kids[0]), "-D", (dir / "s1").string()});
  EXPECT_NE(r.exit_code(), 0);
  EXPECT_NE(r.err.find("lives in a PID namespace of its own (pid 2 there) and is not its init"),
            std::string::npos)
      << r.err;
  r = run_ckpt({"dump", "-t", std::to_string(t.unshare), "-D", (dir / "s2").string()});
  EXPECT_NE(r.exit_code(), 0);
  EXPECT_NE(r.err.find("is the init of a PID namespace of its own"), std::string::npos) << r.err;
  for (pid_t p : {t.unshare, t.init, kids[0]}) {
    EXPECT_EQ(status_field(p, "TracerPid"), "0");
    EXPECT_NE(status_field(p, "State").substr(0, 1), "T");
  }
  ::kill(t.init, SIGUSR2);
  auto st = wait_child(t.unshare, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << read_text(dir / "out");
  EXPECT_NE(read_text(dir / "out").find("PASS"), std::string::npos);
}

}  // namespace
}  // namespace e2e
