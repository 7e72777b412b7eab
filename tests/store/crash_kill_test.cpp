// A writer killed with SIGKILL at any point leaves the store with the old generations, or the old
// ones plus one complete new one; the next open removes whatever the writer left behind.
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "image/store.hpp"
#include "store_test_util.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

constexpr size_t kSizeKib = 1024;

// Starts the writer stopped under ptrace so that it can be killed at its Nth system call stop.
pid_t spawn_traced(const fs::path& store, int seed, bool zstd) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    // LeakSanitizer cannot run under ptrace; the writer is sanitized in the ASan build.
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    raise(SIGSTOP);
    std::string s = std::to_string(seed), size = std::to_string(kSizeKib);
    execl(CKPT_CRASH_WRITER, CKPT_CRASH_WRITER, store.c_str(), s.c_str(), size.c_str(),
          zstd ? "zstd" : "none", nullptr);
    _exit(127);
  }
  int status;
  waitpid(pid, &status, 0);
  ptrace(PTRACE_SETOPTIONS, pid, nullptr, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL);
  return pid;
}

// Runs the writer, killing it at system call stop `kill_at` (entry and exit stops both count).
// Returns the number of stops seen when it ran to the end, or -1 when it was killed.
long run_writer_killed_at(const fs::path& store, int seed, bool zstd, long kill_at) {
  pid_t pid = spawn_traced(store, seed, zstd);
  long stops = 0;
  ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr);
  for (;;) {
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? stops : -2;
    if (WIFSIGNALED(status)) return -1;
    int sig = 0;
    if (WSTOPSIG(status) == (SIGTRAP | 0x80)) {
      if (++stops == kill_at) kill(pid, SIGKILL);
    } else if (WSTOPSIG(status) != SIGTRAP) {
      sig = WSTOPSIG(status);
    }
    ptrace(PTRACE_SYSCALL, pid, nullptr, sig);
  }
}

// Opens the store as the next user would and checks the all-or-nothing promise.
void check_store(const fs::path& dir, std::set<std::string>& known, const std::string& where) {
  auto store = Store::open(dir);
  ASSERT_TRUE(store.ok()) << where << ": " << store.error().message;
  for (auto& e : fs::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    EXPECT_FALSE(name.starts_with(".tmp") || name.starts_with(".del")) << where << ": " << name;
  }
  std::vector<Problem> problems;
  auto gens = store->list(&problems);
  EXPECT_TRUE(problems.empty()) << where << ": " << problems[0].message;
  std::set<std::string> now;
  for (auto& g : gens) now.insert(g.id);
  for (auto& id : known) EXPECT_TRUE(now.count(id)) << where << ": lost " << id;
  ASSERT_LE(now.size(), known.size() + 1) << where;
  for (auto& g : gens) {
    if (known.count(g.id)) continue;
    ASSERT_TRUE(store->verify(g).ok()) << where << ": " << store->verify(g).error().message;
    auto seed = static_cast<uint32_t>(std::stoul(g.labels.at("seed")));
    auto mem = store->read_section(g, "memory");
    ASSERT_TRUE(mem.ok()) << mem.error().message;
    EXPECT_TRUE(*mem == test::content(kSizeKib * 1024, seed)) << where;
  }
  known = now;
}

void kill_at_every_syscall(bool zstd, long step) {
  TempDir tmp;
  auto dir = tmp.path() / "store";
  ASSERT_TRUE(Store::open(dir, {.create = true}).ok());
  std::set<std::string> known;
  long total = run_writer_killed_at(dir, 1, zstd, 0);
  ASSERT_GT(total, 10) << "the writer did not run to the end";
  check_store(dir, known, "complete run");
  ASSERT_EQ(known.size(), 1u);
  std::printf("writer makes %ld system call stops\n", total);
  // Every stop of the writer, from exec to exit: before, inside and after each system call.
  for (long n = 1; n <= total; n += step) {
    long r = run_writer_killed_at(dir, static_cast<int>(n + 1), zstd, n);
    ASSERT_NE(r, -2) << "writer failed by itself at stop " << n;
    check_store(dir, known, "killed at stop " + std::to_string(n));
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GT(known.size(), 1u) << "no kill happened after the publishing rename";
}

TEST(StoreCrash, KillAtEverySystemCall) {
  kill_at_every_syscall(false, 1);
}

// The compressed writer makes the same system calls; every third stop keeps the suite fast.
TEST(StoreCrash, KillAtEveryThirdSystemCallCompressed) {
  kill_at_every_syscall(true, 3);
}

TEST(StoreCrash, KillAtRandomTimesWithoutTracing) {
  TempDir tmp;
  auto dir = tmp.path() / "store";
  ASSERT_TRUE(Store::open(dir, {.create = true}).ok());
  std::set<std::string> known;
  std::mt19937 rng(42);
  for (int i = 0; i < 30; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      std::string s = std::to_string(i), size = std::to_string(kSizeKib);
      execl(CKPT_CRASH_WRITER, CKPT_CRASH_WRITER, dir.c_str(), s.c_str(), size.c_str(),
            i % 2 ? "zstd" : "none", nullptr);
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    check_store(dir, known, "random kill " + std::to_string(i));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace ckpt::image
