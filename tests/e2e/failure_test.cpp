// What a user sees when ckpt cannot do what was asked: exit 1, one line naming the problem, and
// nothing harmed (the dumped process runs on untraced; a failed restore leaves nothing running).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "test_process.hpp"

namespace e2e {
namespace {

size_t line_count(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n + (!s.empty() && s.back() != '\n');
}

class FailureTest : public ::testing::Test {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_F(FailureTest, DumpMissingPid) {
  TempDir dir;
  // A PID that just became free.
  SpawnSpec spec;
  spec.argv = {"/bin/true"};
  pid_t gone = spawn(spec);
  wait_child(gone, 5s);
  auto r = run_ckpt({"dump", "-t", std::to_string(gone), "-D", (dir / "store").string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(std::to_string(gone)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no such process"), std::string::npos) << r.err;
}

TEST_F(FailureTest, DumpWithSocketFailsAndLeavesProcessRunning) {
  TestProcess p({"/usr/bin/python3", "-c",
                 "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
                 "print('READY', flush=True)\ntime.sleep(1000)\n"});
  ASSERT_TRUE(p.wait_ready());
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("socket"), std::string::npos)
      << "the message does not name the socket: " << r.err;
  sleep_for(100ms);
  ASSERT_TRUE(alive(p.pid()));
  EXPECT_EQ(status_field(p.pid(), "TracerPid"), "0");
  std::string state = status_field(p.pid(), "State");
  EXPECT_TRUE(!state.empty() && state[0] == 'S') << "state after a failed dump: " << state;
}

TEST_F(FailureTest, DumpWithAmbiguousThreadCpuTimerFailsAndLeavesProcessRunning) {
  TestProcess p({program_path("thread_cpu_timer")});
  ASSERT_TRUE(p.wait_ready());
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("POSIX timer 0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CPU time of the thread"), std::string::npos) << r.err;
  ASSERT_TRUE(alive(p.pid()));
  EXPECT_EQ(status_field(p.pid(), "TracerPid"), "0");
}

TEST_F(FailureTest, RestoreWhenPidIsTaken) {
  TestProcess p({program_path("syscall_pause")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(std::to_string(p.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  EXPECT_EQ(children_of_self(), std::vector<pid_t>{p.pid()}) << "restore left a process behind";
  EXPECT_TRUE(p.finish()) << "the process holding the pid was disturbed";
}

// The data file and offset of the memory pages section, from `ckpt show GEN --json`.
std::optional<std::pair<fs::path, long>> pages_section(const fs::path& store) {
  for (auto& e : fs::directory_iterator(store)) {
    if (e.path().filename().string().rfind("gen-", 0) != 0) continue;
    auto r = run_ckpt({"show", e.path().string(), "--json"});
    auto at = r.out.find("\"memory.pages\"");
    if (at == std::string::npos) continue;
    auto obj_start = r.out.rfind('{', at), obj_end = r.out.find('}', at);
    std::string obj = r.out.substr(obj_start, obj_end - obj_start);
    auto field = [&](const std::string& key) {
      auto k = obj.find("\"" + key + "\"");
      auto colon = obj.find(':', k);
      return obj.substr(colon + 1, obj.find_first_of(",\n}", colon) - colon - 1);
    };
    std::string file = field("file");
    file.erase(0, file.find('"') + 1);
    file.erase(file.find('"'));
    return std::make_pair(e.path() / file, std::stol(field("offset")));
  }
  return std::nullopt;
}

TEST_F(FailureTest, RestoreFromCorruptedMemoryFails) {
  TestProcess p({program_path("counter")});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump());
  auto section = pages_section(p.store());
  ASSERT_TRUE(section) << "no memory.pages section in the store";
  {
    std::fstream f(section->first, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f) << section->first;
    f.seekp(section->second + 100);
    f.write("CORRUPTED BY THE E2E TEST", 25);
  }
  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  sleep_for(100ms);
  EXPECT_FALSE(alive(p.pid())) << "a process runs with the dumped pid";
  EXPECT_TRUE(children_of_self().empty()) << "restore left a process behind";
}

}  // namespace
}  // namespace e2e
