// Unprivileged use (issue 11, point 13): an ordinary user (here uid 65534, through setpriv, with
// no capability and no supplementary group) dumps a process of their own and restores it. The
// restore cannot choose PIDs on the host, so ckpt makes a user namespace of the user's own (only
// their uid and gid mapped) and restores into a new PID namespace owned by it, with the PID the
// process had. Nothing comes back with more than it had: the restored process has the user's
// ids and no capability, and another user's process cannot be dumped at all.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "support/as_user.hpp"
#include "test_process.hpp"

namespace e2e {
namespace {

constexpr uid_t kUser = 65534;

using ckpt::test_support::as_user;

// The counter's numbers, in the order printed.
std::vector<long> numbers(const std::string& text) {
  std::vector<long> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0])))
      out.push_back(std::stol(line));
  return out;
}

TEST(Unprivileged, AUserRestoresTheirOwnProcessWithItsPidInNamespacesOfTheirOwn) {
  become_subreaper();
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), kUser, kUser), 0);
  auto out_path = dir / "out";
  int out = open_or_die(out_path, O_WRONLY | O_CREAT | O_TRUNC);
  ASSERT_EQ(::fchown(out, kUser, kUser), 0);
  SpawnSpec spec;
  spec.argv = as_user({program_path("counter")});
  spec.fds[1] = spec.fds[2] = out;
  pid_t pid = spawn(spec);
  ::close(out);
  ASSERT_TRUE(wait_for_text(out_path, "READY", pid, 10s)) << read_text(out_path);
  for (int i = 0; i < 500 && numbers(read_text(out_path)).size() < 5; ++i) sleep_for(10ms);
  ASSERT_EQ(status_field(pid, "Uid"), "65534\t65534\t65534\t65534");

  auto store = (dir / "store").string();
  auto dumped = run_command(as_user({ckpt_path(), "dump", "-t", std::to_string(pid), "-D", store}));
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  ASSERT_TRUE(wait_child(pid, 10s).has_value()) << "the dump did not kill it";
  std::vector<long> before = numbers(read_text(out_path));
  ASSERT_FALSE(before.empty());

  auto r = run_command(as_user({ckpt_path(), "restore", "-D", store, "--detach"}));
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.err, m,
      std::regex(
          R"(restored as pid (\d+) in a new PID namespace \(pid (\d+) outside, its init (\d+)\))")))
      << r.err;
  pid_t inner = std::stoi(m[1]), outer = std::stoi(m[2]), init = std::stoi(m[3]);
  EXPECT_EQ(inner, pid) << "the PID it had, inside";
  EXPECT_EQ(status_field(outer, "NSpid"), std::to_string(outer) + "\t" + std::to_string(pid));
  EXPECT_EQ(status_field(outer, "Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(outer, "Gid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(outer, "CapEff"), "0000000000000000");
  EXPECT_EQ(status_field(outer, "CapPrm"), "0000000000000000");
  EXPECT_EQ(status_field(init, "Uid"), "65534\t65534\t65534\t65534");

  // It counts on from where the dump left it: the next number, no gap, no repeat.
  long last = before.back();
  std::vector<long> after;
  for (int i = 0; i < 500; ++i) {
    after = numbers(read_text(out_path));
    if (after.size() >= before.size() + 3) break;
    sleep_for(10ms);
  }
  ASSERT_GE(after.size(), before.size() + 3) << read_text(out_path);
  for (size_t i = 1; i < after.size(); ++i)
    ASSERT_EQ(after[i], after[i - 1] + 1) << "after " << last << ": " << read_text(out_path);
  ASSERT_EQ(::kill(outer, SIGUSR2), 0);
  auto st = wait_child(init, 15s);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(describe_status(*st), "exit 0") << read_text(out_path);
  EXPECT_NE(read_text(out_path).find("PASS"), std::string::npos);
}

// Reads what the pipe `fd` gets within 10 s, up to a newline.
std::string read_line(int fd) {
  std::string line;
  char c;
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 10000) == 1 && ::read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

// A user's program whose standard streams are pipes root made (a root shell's, a supervisor's):
// an unprivileged dumper cannot open them again through /proc/PID/fd, and need not. The read
// end's bytes are peeked through the dumper's borrowed copy; the empty write end needs no reader.
TEST(Unprivileged, PipesRootMadeAreSavedWithTheirBytes) {
  become_subreaper();
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), kUser, kUser), 0);
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  ASSERT_EQ(::write(in[1], "hello\n", 6), 6);
  SpawnSpec spec;
  spec.argv = as_user(
      {"/usr/bin/python3", "-c", "import time\nprint('READY', flush=True)\ntime.sleep(1000)\n"});
  spec.fds[0] = in[0];
  spec.fds[1] = spec.fds[2] = out[1];
  pid_t pid = spawn(spec);
  struct Reaper {  // a failed dump leaves it running
    pid_t pid;
    ~Reaper() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      wait_child(pid, 5s);
    }
  } reaper{pid};
  ::close(in[0]);
  ::close(out[1]);
  ASSERT_EQ(read_line(out[0]), "READY");

  auto store = (dir / "store").string();
  auto dumped = run_command(as_user({ckpt_path(), "dump", "-t", std::to_string(pid), "-D", store}));
  ASSERT_EQ(dumped.exit_code(), 0) << dumped.describe();
  ASSERT_TRUE(wait_child(pid, 10s).has_value()) << "the dump did not kill it";
  reaper.pid = 0;
  ::close(in[1]);
  ::close(out[0]);

  auto r = run_command(as_user({ckpt_path(), "restore", "-D", store, "--detach"}));
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex(R"(pid (\d+) outside, its init (\d+)\))")))
      << r.err;
  pid_t outer = std::stoi(m[1]), init = std::stoi(m[2]);
  // Its standard input holds the line it had not read yet, then end of file: the pipe's other
  // end was outside, and comes back closed.
  int stdin_now = ::open(("/proc/" + std::to_string(outer) + "/fd/0").c_str(), O_RDONLY);
  ASSERT_GE(stdin_now, 0) << strerror(errno);
  EXPECT_EQ(read_line(stdin_now), "hello");
  char c;
  EXPECT_EQ(::read(stdin_now, &c, 1), 0);
  ::close(stdin_now);
  ::kill(init, SIGKILL);
  EXPECT_TRUE(wait_child(init, 10s).has_value());
}

// Another user's process cannot be dumped, nor another user's image restored (even when its
// store is readable and trusted): no way to a process with more than one's own ids.
TEST(Unprivileged, AnotherUsersProcessOrImageIsRefused) {
  TestProcess p({program_path("counter")});
  ASSERT_TRUE(p.wait_ready());
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), kUser, kUser), 0);
  auto r = run_command(as_user(
      {ckpt_path(), "dump", "-t", std::to_string(p.pid()), "-D", (dir / "store").string()}));
  EXPECT_NE(r.exit_code(), 0);
  EXPECT_NE(r.err.find("no permission to trace it (it runs as uid 0"), std::string::npos) << r.err;
  EXPECT_TRUE(left_running_untraced(p.pid(), false));

  ASSERT_TRUE(p.dump({"--leave-running"}));
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  std::string root_store = p.store().string();
  for (auto d = p.store(); d != d.root_path() && d != "/tmp"; d = d.parent_path())
    ::chmod(d.c_str(), 0755);
  for (auto& e : std::filesystem::recursive_directory_iterator(p.store()))
    ::chmod(e.path().c_str(), e.is_directory() ? 0755 : 0644);
  r = run_command(as_user({ckpt_path(), "restore", "-D", root_store, "--detach", "--trust-store"}));
  EXPECT_NE(r.exit_code(), 0);
  EXPECT_NE(r.err.find("the image belongs to uid 0; only root may restore it"), std::string::npos)
      << r.err;
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
