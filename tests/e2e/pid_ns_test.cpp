// PID namespaces (issue 11, point 12). `ckpt restore --pid-ns` brings a tree back inside a new
// PID namespace with the PIDs it had, so copies can run while the original keeps those PIDs on the
// host: programs/pid_view.c (a process and its child) checks that getpid(), getppid() and
// /proc/<own PID> are as before. A tree living in a PID namespace of its own cannot be dumped from
// outside yet: the dump says so and leaves it running.
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

// pid_view as the init of a PID namespace of its own (`unshare --pid --fork --mount-proc`, our
// child), its output in `dir`/out; `init` is its PID here.
void start_in_own_namespace(const TempDir& dir, pid_t& unshare, pid_t& init) {
  int out = open_or_die(dir / "out", O_WRONLY | O_CREAT | O_TRUNC);
  SpawnSpec spec;
  spec.argv = {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc", program_path("pid_view")};
  spec.fds[1] = spec.fds[2] = out;
  spec.extra_env = {"E2E_DIR=" + dir.path().string()};
  unshare = spawn(spec);
  ::close(out);
  ASSERT_TRUE(wait_for_text(dir / "out", "READY", unshare, 10s)) << read_text(dir / "out");
  for (pid_t k : descendants(unshare))
    if (status_field(k, "PPid") == std::to_string(unshare)) init = k;
  ASSERT_GT(init, 0);
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

// Dumped from inside its namespace (as the refusal above says), the tree has its own PIDs; its
// root is that namespace's init, which a restore cannot make yet: it says so.
TEST_F(PidNamespace, FromInsideTheDumpWorksAndTheRestoreNamesWhatItCannotDo) {
  TempDir dir;
  pid_t unshare = 0, init = 0;
  ASSERT_NO_FATAL_FAILURE(start_in_own_namespace(dir, unshare, init));
  auto store = (dir / "store").string();
  auto dumped =
      run_command({"/usr/bin/nsenter", "--pid", "--mount", "--target", std::to_string(init),
                   ckpt_path(), "dump", "-t", "1", "-D", store, "--leave-running"},
                  20s);
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  auto r = run_ckpt({"restore", "-D", store, "--pid-ns", "--detach"});
  EXPECT_NE(r.exit_code(), 0);
  EXPECT_NE(r.err.find("the image's root was PID 1, the init of its PID namespace"),
            std::string::npos)
      << r.err;
  ::kill(init, SIGUSR2);
  auto st = wait_child(unshare, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << read_text(dir / "out");
}

TEST_F(PidNamespace, ATreeInANamespaceOfItsOwnIsRefusedAndRunsOn) {
  TempDir dir;
  pid_t unshare = 0, inner_root = 0;
  ASSERT_NO_FATAL_FAILURE(start_in_own_namespace(dir, unshare, inner_root));
  auto r = run_ckpt({"dump", "-t", std::to_string(inner_root), "-D", (dir / "store").string()});
  EXPECT_NE(r.exit_code(), 0);
  EXPECT_NE(r.err.find("lives in a PID namespace of its own (pid 1 there)"), std::string::npos)
      << r.err;
  EXPECT_EQ(status_field(inner_root, "TracerPid"), "0");
  EXPECT_NE(status_field(inner_root, "State").substr(0, 1), "T");
  ::kill(inner_root, SIGUSR2);
  auto st = wait_child(unshare, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << read_text(dir / "out");
  EXPECT_NE(read_text(dir / "out").find("PASS"), std::string::npos);
}

}  // namespace
}  // namespace e2e
