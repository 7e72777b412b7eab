// File locks across dump and restore: the matrix {POSIX, flock, OFD, lease} x {held, waited for}
// x {one process, shared across fork} x {file, deleted file} (helpers/file_locks.c), and the
// refusal when another process took a lock between dump and restore. After restore a separate
// process tries every lock and must fail where one is held; a waiter is still waiting and gets
// the lock, without EINTR, once the holder lets go.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <tuple>

#include "test_process.hpp"

namespace e2e {
namespace {

// kind, waited for, shared across fork, deleted
using Case = std::tuple<std::string, bool, bool, bool>;

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  auto [kind, wait, fork, deleted] = info.param;
  return kind + (wait ? "_waited" : "_held") + (fork ? "_fork" : "_one") +
         (deleted ? "_deleted" : "_file");
}

void make_file(const fs::path& p) {
  int fd = open_or_die(p, O_WRONLY | O_CREAT | O_TRUNC);
  std::string data(4096, 'x');
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
}

// The system call a waiter blocks in: fcntl, flock, or openat (a lease is waited for in open).
long blocking_call(const std::string& kind) {
  if (kind == "flock") return SYS_flock;
  if (kind == "lease") return SYS_openat;
  return SYS_fcntl;
}

// Whether `pid` is asleep in system call `nr` (/proc/PID/syscall starts with its number).
bool blocked_in(pid_t pid, long nr) {
  std::string text = read_text("/proc/" + std::to_string(pid) + "/syscall");
  return text.rfind(std::to_string(nr) + " ", 0) == 0 && status_field(pid, "State")[0] == 'S';
}

bool wait_blocked(pid_t pid, long nr) {
  for (int i = 0; i < 500; ++i) {
    if (blocked_in(pid, nr)) return true;
    sleep_for(10ms);
  }
  return false;
}

// A process outside the dumped ones holding a lock (`file_locks hold`); released on SIGUSR2.
class Holder {
 public:
  Holder(const std::string& kind, const fs::path& file) {
    int out = open_or_die(dir_ / "out", O_WRONLY | O_CREAT | O_TRUNC);
    int null = open_or_die("/dev/null", O_RDONLY);
    SpawnSpec spec;
    spec.argv = {program_path("file_locks"), "hold", kind, file.string()};
    spec.fds[0] = null;
    spec.fds[1] = out;
    spec.fds[2] = out;
    pid_ = spawn(spec);
    ::close(out);
    ::close(null);
  }
  ~Holder() {
    ::kill(pid_, SIGKILL);
    wait_child(pid_, 5s);
  }
  pid_t pid() const { return pid_; }
  bool ready() { return wait_for_text(dir_ / "out", "READY\n", pid_, 5s); }
  std::string out() const { return read_text(dir_ / "out"); }
  // Lets go of the lock and waits for the holder to end.
  bool release() {
    ::kill(pid_, SIGUSR2);
    auto st = wait_child(pid_, 5s);
    return st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
  }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
};

// What `file_locks try` must print while the target holds its locks.
std::string expected_try(const std::string& kind, bool fork) {
  if (kind == "flock" || kind == "lease") return "main=LOCKED\n";
  std::string child = kind == "posix" && fork ? "LOCKED" : "FREE";
  return "main=LOCKED tail=LOCKED child=" + child + " free=FREE\n";
}

class FileLockMatrix : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_P(FileLockMatrix, DumpRestoreAndTry) {
  auto [kind, wait, fork, deleted] = GetParam();
  TempDir files;
  fs::path file = files / "locked";
  make_file(file);
  std::optional<Holder> holder;
  std::string path = file.string();
  if (wait && !fork) {
    holder.emplace(kind, file);
    ASSERT_TRUE(holder->ready()) << holder->out();
    if (deleted) {
      ASSERT_EQ(::unlink(file.c_str()), 0);
      path = "/proc/" + std::to_string(holder->pid()) + "/fd/10";
    }
  }
  TestProcess p({program_path("file_locks"), "target", kind, wait ? "wait" : "held",
                 fork ? "fork" : "one", deleted ? "deleted" : "file", path});
  ASSERT_TRUE(p.wait_ready());
  pid_t waiter = p.pid();
  if (fork) {
    auto kids = descendants(p.pid());
    ASSERT_EQ(kids.size(), 1u) << p.output();
    waiter = kids[0];
  }
  if (wait) {
    ASSERT_TRUE(wait_blocked(waiter, blocking_call(kind))) << p.output();
  }

  if (holder && deleted && kind != "lease") {
    // The restored processes would get a copy of the deleted file, which the holder outside does
    // not lock: refused, naming both. (A lease is waited for in open(), without a descriptor of
    // the file: the restarted open() finds the original.)
    auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
    EXPECT_EQ(r.exit_code(), 1) << r.describe();
    EXPECT_EQ(line_count(r.err), 1u) << r.err;
    for (std::string piece :
         {std::string("fd 3 is the deleted file"), std::string("has file locks"),
          "open in pid " + std::to_string(holder->pid())})
      EXPECT_NE(r.err.find(piece), std::string::npos) << "missing '" << piece << "': " << r.err;
    sleep_for(100ms);
    EXPECT_TRUE(left_running_untraced(p.pid()));
    EXPECT_TRUE(holder->release()) << holder->out();
    EXPECT_TRUE(wait_for_text(p.dir() / "stdout", "GOT\n", p.pid(), 5s)) << p.output();
    EXPECT_TRUE(p.finish());
    return;
  }
  ASSERT_TRUE(p.dump());
  ASSERT_TRUE(p.restore());

  if (!wait) {
    std::string try_path = deleted ? "/proc/" + std::to_string(p.pid()) + "/fd/10" : path;
    auto r = run_command({program_path("file_locks"), "try", kind, try_path});
    EXPECT_EQ(r.out, expected_try(kind, fork)) << r.describe();
    // The break of a lease signals the process that holds it, as before the dump.
    if (kind == "lease") {
      EXPECT_TRUE(wait_for_text(p.dir() / "stdout", "SIGIO\n", p.pid(), 5s)) << p.output();
    }
  } else {
    // Still waiting after restore, in the same call, until the holder lets go (polled: on a
    // loaded machine the restored waiter may take a while to get back into its call).
    sleep_for(200ms);
    EXPECT_TRUE(wait_blocked(waiter, blocking_call(kind)))
        << "syscall " << read_text("/proc/" + std::to_string(waiter) + "/syscall") << "state "
        << status_field(waiter, "State") << "\n"
        << p.output();
    EXPECT_EQ(p.out().find("GOT"), std::string::npos) << p.output();
    if (holder) {
      EXPECT_TRUE(holder->release()) << holder->out();
    } else {
      ::kill(p.pid(), SIGUSR1);
    }
    EXPECT_TRUE(wait_for_text(p.dir() / "stdout", "GOT\n", p.pid(), 5s)) << p.output();
  }
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Locks, FileLockMatrix,
                         ::testing::Combine(::testing::Values("posix", "flock", "ofd", "lease"),
                                            ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Bool()),
                         case_name);

// A lock another process took between dump and restore: the restore fails naming it and leaves
// nothing behind; once that process lets go, the same image restores.
class FileLockTakenSinceDump : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { become_subreaper(); }
};

TEST_P(FileLockTakenSinceDump, RefusedThenRestored) {
  std::string kind = GetParam();
  TempDir files;
  fs::path file = files / "locked";
  make_file(file);
  TestProcess p({program_path("file_locks"), "target", kind, "held", "one", "file", file.string()});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump());
  Holder holder(kind, file);
  ASSERT_TRUE(holder.ready()) << holder.out();

  auto r = run_ckpt({"restore", "-D", p.store().string(), "--detach"});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  // A lease taken since makes the restorer's open() of the file fail at once (rather than wait
  // for the kernel to break it).
  std::vector<std::string> pieces = {"fd 10 (" + file.string() + ")",
                                     "held since the dump by pid " + std::to_string(holder.pid())};
  if (kind == "lease") pieces = {"open " + file.string(), "another process holds a lease on it"};
  for (auto& piece : pieces)
    EXPECT_NE(r.err.find(piece), std::string::npos) << "missing '" << piece << "': " << r.err;
  EXPECT_TRUE(reap_all({p.pid()}, {holder.pid()}, 3s)) << "a half-restored process is left";

  ASSERT_TRUE(holder.release()) << holder.out();
  ASSERT_TRUE(p.restore());
  auto t = run_command({program_path("file_locks"), "try", kind, file.string()});
  EXPECT_EQ(t.out, expected_try(kind, false)) << t.describe();
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Locks, FileLockTakenSinceDump,
                         ::testing::Values("posix", "flock", "ofd", "lease"));

// With --leave-running the original goes on holding every lock: nobody else gets them.
TEST(FileLocks, LeaveRunningKeepsTheOriginalsLocks) {
  become_subreaper();
  TempDir files;
  fs::path file = files / "locked";
  make_file(file);
  TestProcess p(
      {program_path("file_locks"), "target", "posix", "held", "fork", "file", file.string()});
  ASSERT_TRUE(p.wait_ready());
  ASSERT_TRUE(p.dump({"--leave-running"}));
  auto t = run_command({program_path("file_locks"), "try", "posix", file.string()});
  EXPECT_EQ(t.out, expected_try("posix", true)) << t.describe();
  EXPECT_TRUE(p.finish());
}

// A lock ckpt cannot take again (on a pipe, which restore makes anew): the dump is refused
// naming it, and the process goes on untraced with its lock.
TEST(FileLocks, LockOnAPipeIsRefused) {
  become_subreaper();
  TestProcess p({program_path("file_locks"), "pipe", "flock", "-"});
  ASSERT_TRUE(p.wait_ready());
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("fd 10 holds a flock exclusive lock on pipe:["), std::string::npos) << r.err;
  sleep_for(100ms);
  EXPECT_TRUE(left_running_untraced(p.pid()));
  EXPECT_TRUE(p.finish());
}

// Only the main thread's file table is saved: a thread with a table (and a POSIX lock) of its
// own, or a child sharing its parent's, would come back wrong; refused naming it, left running.
class SharedFileTable : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedFileTable, IsRefusedNamingIt) {
  become_subreaper();
  TempDir files;
  fs::path file = files / "locked";
  make_file(file);
  TestProcess p({program_path("file_locks"), "table", GetParam(), file.string()});
  ASSERT_TRUE(p.wait_ready());
  auto r = run_ckpt({"dump", "-t", std::to_string(p.pid()), "-D", p.store().string()});
  EXPECT_EQ(r.exit_code(), 1) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.err;
  std::string want = GetParam() == "thread" ? "has a file table of its own (unshare CLONE_FILES)"
                                            : "shares its file table (clone with CLONE_FILES)";
  EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
  sleep_for(100ms);
  EXPECT_TRUE(left_running_untraced(p.pid()));
  if (GetParam() == "thread") {  // its lock is still held
    auto t = run_command({program_path("file_locks"), "try", "posix", file.string()});
    EXPECT_NE(t.out.find("main=LOCKED"), std::string::npos) << t.describe();
  }
  EXPECT_TRUE(p.finish());
}

INSTANTIATE_TEST_SUITE_P(Ways, SharedFileTable, ::testing::Values("thread", "child"));

}  // namespace
}  // namespace e2e
