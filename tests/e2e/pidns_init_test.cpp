// A dump without --leave-running says that it killed the process: it must have, also when the
// process is the init of a PID namespace (which ignores signals sent from inside its namespace,
// and whose death takes every other process of the namespace with it).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "test_process.hpp"

namespace e2e {
namespace {

// The one child of `pid` (unshare --fork's), or -1.
pid_t only_child(pid_t pid) {
  auto kids = descendants(pid);
  return kids.empty() ? -1 : kids.front();
}

TEST(PidNamespaceInit, ADumpThatSaysItKilledTheInitHasKilledIt) {
  ASSERT_EQ(::access("/usr/bin/unshare", X_OK), 0) << "unshare (util-linux) is not installed";
  become_subreaper();
  TestProcess p(
      {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc", program_path("syscall_pause")});
  ASSERT_TRUE(p.wait_ready());
  pid_t init = only_child(p.pid());
  ASSERT_GT(init, 0) << "unshare " << p.pid() << " has no child";
  // It is the init of its namespace: the last NSpid is 1.
  std::string nspid = status_field(init, "NSpid");
  ASSERT_EQ(nspid.substr(nspid.find_last_of(" \t") + 1), "1") << "NSpid: " << nspid;

  auto r = run_ckpt({"dump", "-t", std::to_string(init), "-D", p.store().string()});
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  // Dead when ckpt says so, not some time later: no wait here.
  EXPECT_FALSE(alive(init)) << "ckpt dump said it killed pid " << init << " (" << r.describe()
                            << "), but it is " << status_field(init, "State");
  // unshare, its parent, sees it die and ends.
  auto st = wait_child(p.pid(), 5s);
  ASSERT_TRUE(st.has_value()) << "unshare did not end: its child " << init << " is "
                              << status_field(init, "State");
  // What it said it saved is there.
  auto verify = run_ckpt({"verify", p.store().string()});
  EXPECT_EQ(verify.exit_code(), 0) << verify.describe();
}

}  // namespace
}  // namespace e2e
