// `ckpt run` by an ordinary user (uid 65534 through setpriv: no capability, no group). Without
// CAP_CHECKPOINT_RESTORE the run moves into a user and PID namespace of its own, with the
// supervisor as their init, so that recoveries restore the program with its PID there. Proof:
// SIGKILLed from outside (by the PID run.json gives, which must be the program's PID out here),
// it is recovered from checkpoints, finishes with the right sum, and never holds a capability;
// `ckpt checkpoint` and `ckpt status` reach the supervisor from outside.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "support/as_user.hpp"
#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

using ckpt::test_support::as_user;

std::string status_line(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 2);
  return "";
}

TEST(SupervisorUnprivileged, AUsersRunIsRecoveredFromCheckpointsInNamespacesOfItsOwn) {
  TempDir d;
  ASSERT_EQ(::chown(d.path().c_str(), 65534, 65534), 0);
  auto store = d.path() / "store";
  const long n = 30000;
  Proc sv(d.path(), as_user({CKPT_CLI_PATH, "run", "--dir", store, "--interval", "0.2",
                             "--min-uptime", "0.2", "--", CKPT_SV_MT_SUM, std::to_string(n), "4"}));
  int kills = 0;
  bool asked = false;
  while (kills < 5 && sv.running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto st = run_state(store);
    pid_t child = st.value("child_pid", 0);
    if (st.value("phase", "") != "running" || child <= 0) continue;
    if (status_line(child, "Uid") != "65534\t65534\t65534\t65534") continue;  // not up yet
    EXPECT_EQ(status_line(child, "CapEff"), "0000000000000000");
    EXPECT_NE(status_line(child, "NSpid").find('\t'), std::string::npos)
        << "the program lives in the run's PID namespace";
    if (!asked) {
      auto [code, out] = run_cmd(as_user({CKPT_CLI_PATH, "checkpoint", store}));
      EXPECT_EQ(code, 0) << out;
      asked = true;
    }
    if (::kill(child, SIGKILL) == 0) ++kills;
  }
  ASSERT_EQ(kills, 5) << sv.err();
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), std::to_string(n * (n + 1) / 2) + "\n");
  std::string err = sv.err();
  EXPECT_EQ(count(err, "crash: killed by SIGKILL"), 5u) << err;
  EXPECT_GE(count(err, "recovered from generation"), 4u) << err;
  EXPECT_EQ(count(err, "needs CAP_CHECKPOINT_RESTORE"), 0u) << err;
  EXPECT_EQ(count(err, "(requested)"), 1u) << err;
}

}  // namespace
}  // namespace ckpt::test
