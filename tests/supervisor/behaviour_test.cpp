// `ckpt run` as a user meets it: stdio and signals pass through, exit codes, crash loops, bad
// input that must lose nothing, `ckpt checkpoint` / SIGUSR1 and `ckpt status`.
#include <sys/mount.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "sv_test_util.hpp"

namespace ckpt::test {
namespace {

const std::string kCli = CKPT_CLI_PATH;

// A program that counts slowly and forever: the target of requests and status.
std::vector<std::string> slow_counter() {
  return {"/usr/bin/python3", "-c",
          "import time\ni = 0\nwhile True:\n    i += 1\n    time.sleep(0.01)\n"};
}

TEST(SupervisorBehaviour, StdioPassesThroughInAPipeline) {
  TempDir d;
  auto in = d.path() / "in";
  std::ofstream(in) << "3\n4\n5\n";
  Proc sv(d.path(),
          {kCli, "run", "-q", "--dir", d.path() / "s", "--", "/usr/bin/python3", "-c",
           "import sys\nprint(sum(int(l) for l in sys.stdin))\n"
           "print('to stderr', file=sys.stderr)\n"},
          in);
  ASSERT_EQ(sv.wait(), 0) << sv.err();
  EXPECT_EQ(sv.out(), "12\n");
  EXPECT_EQ(sv.err(), "to stderr\n");  // --quiet: nothing of ours
}

TEST(SupervisorBehaviour, ExitCodeOfANonCrashAndSigtermIsForwarded) {
  TempDir d;
  auto [code, out] = run_cmd({kCli, "run", "-q", "--restart-on", "SIGSEGV", "--dir", d.path() / "s",
                              "--", "/bin/sh", "-c", "exit 7"});
  EXPECT_EQ(code, 7) << out;

  Proc sv(d.path(), {kCli, "run", "-q", "--dir", d.path() / "t", "--", "/usr/bin/python3", "-c",
                     "import signal, sys, time\n"
                     "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
                     "print('ready', flush=True)\n"
                     "while True: time.sleep(0.01)\n"});
  ASSERT_TRUE(eventually([&] { return sv.out() == "ready\n"; })) << sv.err();
  ::kill(sv.pid(), SIGTERM);
  EXPECT_EQ(sv.wait(), 42) << sv.err();  // the program's handler ran; no restart
}

TEST(SupervisorBehaviour, MissingProgramFailsWith127AndOneLine) {
  TempDir d;
  auto [code, out] = run_cmd({kCli, "run", "--dir", d.path() / "s", "--", "/no/such/program"});
  EXPECT_EQ(code, 127);
  EXPECT_EQ(out, "ckpt run: cannot run '/no/such/program': No such file or directory\n");
  auto [code2, out2] = run_cmd({kCli, "run", "--dir", d.path() / "s", "--", "/etc/passwd"});
  EXPECT_EQ(code2, 126) << out2;
}

TEST(SupervisorBehaviour, UnusableStoreRefusesBeforeStartingTheProgram) {
  TempDir d;
  auto marker = d.path() / "ran";
  std::vector<std::string> prog = {"/bin/sh", "-c", "touch " + marker.string()};
  std::ofstream(d.path() / "file") << "x";
  auto [code, out] =
      run_cmd({kCli, "run", "--dir", d.path() / "file" / "s", "--", prog[0], prog[1], prog[2]});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("ckpt run: "), std::string::npos) << out;
  EXPECT_NE(out.find("Not a directory"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(marker));

  auto ro = d.path() / "ro";
  fs::create_directory(ro);
  ASSERT_EQ(::mount("tmpfs", ro.c_str(), "tmpfs", MS_RDONLY, "size=1m"), 0);
  auto [code2, out2] = run_cmd({kCli, "run", "--dir", ro / "s", "--", prog[0], prog[1], prog[2]});
  ::umount(ro.c_str());
  EXPECT_EQ(code2, 1);
  EXPECT_NE(out2.find("Read-only file system"), std::string::npos) << out2;
  EXPECT_FALSE(fs::exists(marker));
}

TEST(SupervisorBehaviour, SecondSupervisorOnTheSameStoreIsRefused) {
  TempDir d;
  auto store = d.path() / "s";
  Proc first(d.path(),
             {kCli, "run", "-q", "--interval", "0", "--dir", store, "--", "/bin/sleep", "30"});
  ASSERT_TRUE(eventually([&] { return run_state(store).value("phase", "") == "running"; }));
  auto [code, out] = run_cmd({kCli, "run", "--dir", store, "--", "/bin/true"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find(fmt::format("is in use by pid {} (ckpt run)", first.pid())), std::string::npos)
      << out;
  EXPECT_TRUE(first.running());
}

TEST(SupervisorBehaviour, CheckpointOnRequestByStorePidAndSigusr1AndStatus) {
  TempDir d;
  auto store = d.path() / "s";
  Proc sv(d.path(), {kCli, "run", "--interval", "0", "--dir", store, "--", slow_counter()[0],
                     slow_counter()[1], slow_counter()[2]});
  ASSERT_TRUE(eventually([&] { return run_state(store).value("phase", "") == "running"; }));
  auto [c1, o1] = run_cmd({kCli, "checkpoint", store});
  EXPECT_EQ(c1, 0) << o1;
  EXPECT_NE(o1.find("checkpoint gen-"), std::string::npos) << o1;
  auto [c2, o2] = run_cmd({kCli, "checkpoint", std::to_string(sv.pid())});
  EXPECT_EQ(c2, 0) << o2;
  ::kill(sv.pid(), SIGUSR1);
  ASSERT_TRUE(eventually([&] { return run_state(store).value("checkpoints", 0) == 3; }))
      << sv.err();
  EXPECT_EQ(count(sv.err(), "(requested)"), 3u) << sv.err();

  auto [c3, o3] = run_cmd({kCli, "status", store});
  EXPECT_EQ(c3, 0) << o3;
  EXPECT_NE(o3.find(fmt::format("supervisor:  pid {}, running", sv.pid())), std::string::npos)
      << o3;
  EXPECT_NE(o3.find("checkpoints: 3, last gen-"), std::string::npos) << o3;
  EXPECT_NE(o3.find("restarts:    0"), std::string::npos) << o3;

  ASSERT_TRUE(signal_child(store, SIGKILL));
  ASSERT_TRUE(eventually([&] { return run_state(store).value("restarts", 0) == 1; })) << sv.err();
  auto [c4, o4] = run_cmd({kCli, "status", std::to_string(sv.pid())});
  EXPECT_NE(o4.find("restarts:    1 (last crash: killed by SIGKILL"), std::string::npos) << o4;

  ::kill(sv.pid(), SIGKILL);
  sv.wait();
  auto [c5, o5] = run_cmd({kCli, "status", store});
  EXPECT_EQ(c5, 1);
  EXPECT_NE(o5.find("is gone"), std::string::npos) << o5;
  auto [c6, o6] = run_cmd({kCli, "checkpoint", store});
  EXPECT_EQ(c6, 1);
  EXPECT_NE(o6.find("is gone"), std::string::npos) << o6;
  ASSERT_TRUE(signal_child(store, SIGKILL));
}

TEST(SupervisorBehaviour, CrashLoopFallsBackAndGivesUpWithTheHistory) {
  TempDir d;
  auto [code, out] = run_cmd({kCli, "run", "--max-retries", "1", "--min-uptime", "5", "--dir",
                              d.path() / "s", "--", "/bin/sh", "-c", "exit 3"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_EQ(count(out, "crash: exit status 3"), 2u) << out;
  EXPECT_NE(out.find("giving up: every generation and a fresh start crashed"), std::string::npos)
      << out;
  EXPECT_NE(out.find("a fresh start crashed 2 times"), std::string::npos) << out;

  auto [code2, out2] = run_cmd({kCli, "run", "--max-restarts", "2", "--min-uptime", "0", "--dir",
                                d.path() / "t", "--", "/bin/sh", "-c", "kill -SEGV $$"});
  EXPECT_EQ(code2, 128 + SIGSEGV) << out2;
  EXPECT_NE(out2.find("giving up after 2 restarts"), std::string::npos) << out2;
  EXPECT_EQ(count(out2, "killed by SIGSEGV after"), 3u) << out2;
}

TEST(SupervisorBehaviour, CorruptNewestGenerationIsSkippedWithAMessage) {
  TempDir d;
  auto store = d.path() / "s";
  Proc sv(d.path(), {kCli, "run", "--interval", "0", "--min-uptime", "0", "--dir", store, "--",
                     slow_counter()[0], slow_counter()[1], slow_counter()[2]});
  ASSERT_TRUE(eventually([&] { return run_state(store).value("phase", "") == "running"; }));
  ASSERT_EQ(run_cmd({kCli, "checkpoint", store}).first, 0);
  auto older = run_state(store).value("last_generation", "");
  ASSERT_EQ(run_cmd({kCli, "checkpoint", store}).first, 0);
  auto newest = run_state(store).value("last_generation", "");
  // Damage every data file of the newest generation.
  for (auto& f : fs::directory_iterator(store / newest)) {
    if (f.path().filename() == "manifest") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(200);
    io.write("garbage-garbage-garbage", 23);
  }
  ASSERT_TRUE(signal_child(store, SIGKILL));
  ASSERT_TRUE(eventually([&] { return sv.err().find("recovered from") != std::string::npos; }))
      << sv.err();
  EXPECT_NE(sv.err().find("skipping generation " + newest), std::string::npos) << sv.err();
  EXPECT_NE(sv.err().find("recovered from generation " + older), std::string::npos) << sv.err();
  ::kill(sv.pid(), SIGTERM);
  EXPECT_EQ(sv.wait(), 128 + SIGTERM) << sv.err();
}

TEST(SupervisorBehaviour, FullDiskKeepsTheProgramRunningAndOlderGenerations) {
  TempDir d;
  auto mnt = d.path() / "small";
  fs::create_directory(mnt);
  ASSERT_EQ(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=10m"), 0);
  auto store = mnt / "s";
  {
    // ~8 MiB of live memory: the first generation fits, the second does not.
    Proc sv(d.path(), {kCli, "run", "--interval", "0", "--keep", "5", "--dir", store, "--",
                       "/usr/bin/python3", "-c",
                       "import os, time\nb = bytearray(os.urandom(4 << 20))\ni = 0\n"
                       "while True:\n    i += 1\n    time.sleep(0.01)\n"});
    ASSERT_TRUE(eventually([&] { return run_state(store).value("phase", "") == "running"; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto [c1, o1] = run_cmd({kCli, "checkpoint", store});
    ASSERT_EQ(c1, 0) << o1 << sv.err();
    auto first = run_state(store).value("last_generation", "");
    auto [c2, o2] = run_cmd({kCli, "checkpoint", store});
    EXPECT_EQ(c2, 1) << o2;
    EXPECT_NE(o2.find("No space left on device"), std::string::npos) << o2;
    EXPECT_NE(sv.err().find("checkpoint failed, the program keeps running"), std::string::npos);
    EXPECT_TRUE(sv.running());
    EXPECT_TRUE(fs::exists(store / first));
    EXPECT_TRUE(signal_child(store, 0));
    ::kill(sv.pid(), SIGTERM);
    EXPECT_EQ(sv.wait(), 128 + SIGTERM);
  }
  ::umount2(mnt.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace ckpt::test
