// ENOSPC while writing: a clear error naming the file, no leftovers, older generations intact.
// The same for `ckpt dump` of a live process into a full or read-only store: one line, and the
// process runs on untouched (it checks itself: programs/fault_target.c of tests/reliability).
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "image/store.hpp"
#include "store_test_util.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;

// A 2 MiB filesystem mounted for the test: tmpfs, or a loop-mounted ext4 image.
class SmallFs {
 public:
  SmallFs() {
    dir_ = tmp_.path() / "mnt";
    fs::create_directory(dir_);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=2m,mode=0700") == 0) {
      mounted_ = true;
      return;
    }
    why_ = std::string("mount tmpfs: ") + strerror(errno);
    auto img = tmp_.path() / "fs.img";
    std::string cmd = "truncate -s 4M " + img.string() + " && mkfs.ext4 -q " + img.string() +
                      " && mount -o loop " + img.string() + " " + dir_.string() + " 2>/dev/null";
    if (std::system(cmd.c_str()) == 0)
      mounted_ = true;
    else
      why_ += "; loop-mounted ext4 failed too";
  }
  ~SmallFs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool remount_read_only() {
    return ::mount(nullptr, dir_.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }
  const std::string& why() const { return why_; }
  const fs::path& dir() const { return dir_; }

 private:
  test::TempDir tmp_;
  fs::path dir_;
  bool mounted_ = false;
  std::string why_;
};

TEST(StoreEnospc, FailedWriteKeepsEarlierGenerations) {
  SmallFs small;
  if (!small.mounted()) GTEST_SKIP() << "cannot mount a small filesystem: " << small.why();
  auto store = Store::open(small.dir() / "s", {.create = true});
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto first = store->begin_generation();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->write_section("mem", test::content(100000, 1)).ok());
  auto good = (*first)->commit();
  ASSERT_TRUE(good.ok()) << good.error().message;

  std::string error;
  {
    auto w = store->begin_generation();
    ASSERT_TRUE(w.ok());
    auto big = test::content(8 << 20, 2);
    Status st = (*w)->write_section("mem", big);
    if (st.ok()) {
      auto gen = (*w)->commit();
      ASSERT_FALSE(gen.ok()) << "8 MiB fit on a 2 MiB filesystem";
      error = gen.error().message;
    } else {
      error = st.error().message;
    }
  }
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  EXPECT_NE(error.find((small.dir() / "s" / ".tmp-").string()), std::string::npos) << error;

  auto again = Store::open(small.dir() / "s");
  ASSERT_TRUE(again.ok());
  auto latest = again->latest_valid();
  ASSERT_TRUE(latest.ok()) << latest.error().message;
  EXPECT_EQ(latest->id, good->id);
  EXPECT_EQ(again->list().size(), 1u);
  for (auto& e : fs::directory_iterator(small.dir() / "s"))
    EXPECT_FALSE(e.path().filename().string().starts_with(".tmp")) << e.path();
  // The space is back: the next generation fits again.
  auto w = again->begin_generation();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->write_section("mem", test::content(100000, 3)).ok());
  EXPECT_TRUE((*w)->commit().ok());
}

// A multi-threaded process with 1 MiB of patterned memory that checks itself on SIGUSR1.
class Target {
 public:
  explicit Target(const fs::path& dir) : out_(dir / "target.out") {
    pid_ = ::fork();
    if (pid_ == 0) {
      int in = ::open("/dev/null", O_RDONLY);
      int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::close_range(3, ~0u, 0);
      ::execl(CKPT_FAULT_TARGET, CKPT_FAULT_TARGET, "1", "2", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Target() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  std::string out() const {
    std::ifstream in(out_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  bool wait_for(const std::string& text, size_t after = 0) const {
    for (int i = 0; i < 1000; ++i) {
      std::string o = out();
      if (o.size() > after && o.find(text, after) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  // Untraced, running, and intact by its own check.
  ::testing::AssertionResult untouched() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line, state, tracer;
    while (std::getline(status, line)) {
      if (line.rfind("State:", 0) == 0) state = line.substr(7);
      if (line.rfind("TracerPid:", 0) == 0) tracer = line.substr(11);
    }
    if (tracer != "0" || state.empty() || state[0] == 'T' || state[0] == 't' || state[0] == 'Z')
      return ::testing::AssertionFailure() << "state " << state << ", tracer " << tracer;
    size_t before = out().size();
    ::kill(pid_, SIGUSR1);
    if (!wait_for("CHECK " + std::to_string(pid_), before))
      return ::testing::AssertionFailure() << "no check from the target:\n" << out();
    if (out().find("FAIL", before) != std::string::npos)
      return ::testing::AssertionFailure() << out();
    return ::testing::AssertionSuccess();
  }

 private:
  fs::path out_;
  pid_t pid_ = -1;
};

// One generation made, then the second dump meets a store it cannot write.
void dump_into_unwritable_store(bool read_only, const std::string& expected) {
  SmallFs small;
  if (!small.mounted()) GTEST_SKIP() << "cannot mount a small filesystem: " << small.why();
  test::TempDir tmp;
  Target target(tmp.path());
  ASSERT_TRUE(target.wait_for("READY")) << target.out();
  auto store = (small.dir() / "s").string(), pid = std::to_string(target.pid());
  auto first = test::run({CKPT_CLI_PATH, "dump", "-t", pid, "-D", store, "--leave-running"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  if (read_only) {
    ASSERT_TRUE(small.remount_read_only()) << strerror(errno);
  } else {
    // Leave less room than another image needs.
    std::string filler((1 << 20) - (64 << 10), 'x');
    std::ofstream(small.dir() / "filler", std::ios::binary) << filler;
  }
  auto r = test::run({CKPT_CLI_PATH, "dump", "-t", pid, "-D", store, "--leave-running"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
  EXPECT_TRUE(target.untouched());
  auto verify = test::run({CKPT_CLI_PATH, "verify", store});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_EQ(std::count(verify.out.begin(), verify.out.end(), '\n'), 1) << verify.out;
}

TEST(StoreEnospc, DumpIntoAFullStoreFailsWithOneLineAndLeavesTheProcessUntouched) {
  dump_into_unwritable_store(false, "No space left on device");
}

TEST(StoreReadOnly, DumpIntoAReadOnlyStoreFailsWithOneLineAndLeavesTheProcessUntouched) {
  dump_into_unwritable_store(true, "Read-only file system");
}

}  // namespace
}  // namespace ckpt::image
