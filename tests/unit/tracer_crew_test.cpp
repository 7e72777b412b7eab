// TracerCrew: each member runs its jobs in order on one thread of its own (member 0 on the
// caller's), and what a member attached is its own: it alone may make ptrace requests on it, and
// its end kills the tracee (PTRACE_O_EXITKILL), which is why a crew outlives every attachment.
// RemoteSyscalls::call_batch: several calls in one resume through the restorer page's runner.
// CpuPin and pinned members: tracer and tracees kept on one CPU for the time they hand it over.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "arch/arch.hpp"
#include "common/cpu_pin.hpp"
#include "common/tracer_crew.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt {
namespace {

TEST(TracerCrew, EachMemberRunsItsJobsInOrderOnOneThread) {
  TracerCrew crew(3);
  ASSERT_EQ(crew.size(), 3u);
  std::vector<std::thread::id> seen(3 * 4);
  std::vector<int> order[3];
  std::vector<std::future<Status>> done;
  for (int job = 0; job < 4; ++job)
    for (size_t k = crew.size(); k-- > 0;)
      done.push_back(crew.post(k, [&, k, job] {
        seen[k * 4 + job] = std::this_thread::get_id();
        order[k].push_back(job);
        return Status{};
      }));
  for (auto& d : done) ASSERT_TRUE(d.get().ok());
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(order[k], (std::vector<int>{0, 1, 2, 3})) << "member " << k;
    for (int job = 1; job < 4; ++job) EXPECT_EQ(seen[k * 4 + job], seen[k * 4]) << "member " << k;
  }
  EXPECT_EQ(seen[0], std::this_thread::get_id()) << "member 0 is the caller";
  EXPECT_NE(seen[4], seen[0]);
  EXPECT_NE(seen[8], seen[4]);
}

TEST(TracerCrew, AShareRunsEveryItemUpToTheFirstFailureInItsOrder) {
  TracerCrew crew(2);
  std::vector<size_t> items = {0, 1, 2, 3, 4, 5};
  std::atomic<int> ran{0};
  auto result = crew.share(items, [&](size_t x) -> Status {
    ++ran;
    return x == 3 ? errorf("item {}", x) : Status{};
  });
  for (size_t j = 0; j < 3; ++j) EXPECT_TRUE(result[j].ok()) << j;
  ASSERT_FALSE(result[3].ok());
  EXPECT_EQ(result[3].error().message, "item 3");
  EXPECT_FALSE(result[5].ok()) << "an item after the failure on the same member ran";
  // Without stop, every item runs.
  ran = 0;
  auto all = crew.share(
      items,
      [&](size_t x) -> Status {
        ++ran;
        return x == 3 ? errorf("item {}", x) : Status{};
      },
      false);
  EXPECT_EQ(ran.load(), 6);
  EXPECT_TRUE(all[5].ok());
}

TEST(TracerCrew, InTurnRunsTheItemsOneAfterTheOtherInTheirOrderUpToTheFirstFailure) {
  TracerCrew crew(2);
  std::vector<size_t> items = {4, 1, 0, 3, 2, 5};  // members 0, 1, 0, 1, 0, 1
  std::vector<size_t> ran;
  std::atomic<int> inside{0};
  bool overlapped = false;
  auto result = crew.in_turn(items, [&](size_t x) -> Status {
    if (inside.fetch_add(1) != 0) overlapped = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ran.push_back(x);
    inside.fetch_sub(1);
    return x == 2 ? errorf("item {}", x) : Status{};
  });
  EXPECT_FALSE(overlapped) << "two items ran at once";
  EXPECT_EQ(ran, (std::vector<size_t>{4, 1, 0, 3, 2}))
      << "not in the order given, or past the failure";
  for (size_t j = 0; j < 4; ++j) EXPECT_TRUE(result[j].ok()) << j;
  ASSERT_FALSE(result[4].ok());
  EXPECT_EQ(result[4].error().message, "item 2");
  ASSERT_FALSE(result[5].ok());
  EXPECT_EQ(result[5].error().message, "not reached");
}

// The CPU mask of thread `tid` as /proc shows it.
std::string cpus_of(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Cpus_allowed_list:", 0) == 0) return line.substr(line.find('\t') + 1);
  return "?";
}

TEST(CpuPin, PinsAThreadToOneCpuAndGivesItsMaskBack) {
  auto cpus = allowed_cpus();
  if (cpus.size() < 2) GTEST_FAIL() << "needs two CPUs";
  std::atomic<pid_t> tid{0};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    tid = ::gettid();
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (tid == 0) std::this_thread::yield();
  std::string own = cpus_of(tid);
  {
    CpuPin pin = CpuPin::pin(tid, cpus[1]);
    ASSERT_TRUE(pin.pinned());
    EXPECT_EQ(cpus_of(tid), std::to_string(cpus[1]));
    CpuPin moved = std::move(pin);
    EXPECT_FALSE(pin.pinned());
    EXPECT_EQ(cpus_of(tid), std::to_string(cpus[1])) << "a move must not unpin";
  }
  EXPECT_EQ(cpus_of(tid), own);
  // A thread that may not run there is left as it is.
  cpu_set_t only0;
  CPU_ZERO(&only0);
  CPU_SET(cpus[0], &only0);
  ASSERT_EQ(::sched_setaffinity(tid, sizeof only0, &only0), 0);
  {
    CpuPin pin = CpuPin::pin(tid, cpus[1]);
    EXPECT_FALSE(pin.pinned());
    EXPECT_EQ(cpus_of(tid), std::to_string(cpus[0]));
  }
  EXPECT_EQ(cpus_of(tid), std::to_string(cpus[0]));
  // Released: left pinned, and the mask it had handed over.
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c : cpus) CPU_SET(c, &all);
  ASSERT_EQ(::sched_setaffinity(tid, sizeof all, &all), 0);
  auto before = CpuPin::pin(tid, cpus[0]).release();
  EXPECT_EQ(cpus_of(tid), std::to_string(cpus[0]));
  ASSERT_FALSE(before.empty());
  for (int c : cpus) EXPECT_TRUE(before[c / 64] & (uint64_t{1} << (c % 64))) << c;
  // Pinned, it can be moved to another CPU of the mask it had before (a puppet that populates
  // while its builder copies), and goes back to its pin after.
  {
    CpuPin moved = CpuPin::pin(tid, cpus[1], true, &before);
    ASSERT_TRUE(moved.pinned());
    EXPECT_EQ(cpus_of(tid), std::to_string(cpus[1]));
  }
  EXPECT_EQ(cpus_of(tid), std::to_string(cpus[0]));
  std::vector<uint64_t> only_first(before.size(), 0);
  only_first[cpus[0] / 64] = uint64_t{1} << (cpus[0] % 64);
  EXPECT_FALSE(CpuPin::pin(tid, cpus[1], true, &only_first).pinned()) << "outside `within`";
  stop = true;
  t.join();
}

TEST(TracerCrew, PinnedMembersRunOnCpusOfTheirOwnUntilThePinsEnd) {
  auto cpus = allowed_cpus();
  if (cpus.size() < 2) GTEST_FAIL() << "needs two CPUs";
  std::string own = cpus_of(::gettid());
  TracerCrew crew(2);
  {
    auto pins = crew.pin_members();
    ASSERT_GE(crew.cpu(0), 0);
    ASSERT_GE(crew.cpu(1), 0);
    EXPECT_NE(crew.cpu(0), crew.cpu(1));
    for (size_t k = 0; k < 2; ++k)
      EXPECT_TRUE(crew.run(k,
                           [&, k]() -> Status {
                             if (cpus_of(::gettid()) != std::to_string(crew.cpu(k)))
                               return errorf("member {} runs on {}", k, cpus_of(::gettid()));
                             if (::sched_getcpu() != crew.cpu(k))
                               return errorf("member {} is on CPU {}", k, ::sched_getcpu());
                             return Status{};
                           })
                      .ok())
          << k;
  }
  EXPECT_EQ(cpus_of(::gettid()), own) << "the caller keeps its mask once the pins end";
}

TEST(TracerCrew, AJobsErrorComesBackToTheCaller) {
  TracerCrew crew(2);
  Status st = crew.run(1, [] { return errorf("pid {}: no", 42); });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "pid 42: no");
}

TEST(TracerCrew, AMembersTraceeAnswersOnlyThatMemberAndDiesWithIt) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (;;) ::pause();
  }
  {
    TracerCrew crew(2);
    ptrace::Tracee t;
    ASSERT_TRUE(crew.run(1,
                         [&]() -> Status {
                           CKPT_TRY_ASSIGN(t, ptrace::Tracee::seize(child, PTRACE_O_EXITKILL));
                           return t.interrupt();
                         })
                    .ok());
    // The caller is not the tracer: the kernel does not answer it.
    EXPECT_FALSE(t.regs().ok());
    EXPECT_TRUE(
        crew.run(1, [&]() -> Status { return t.regs().ok() ? Status{} : t.regs().error(); }).ok());
    t.release();  // the member's end is what lets it go here
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

// A child with a restorer page (arch::kTrampolineCode) at `page`: says so with a byte on
// `ready`, then waits for a byte on `go` and exits 0. It must go on unharmed after the calls.
pid_t child_with_runner(uint64_t page, int ready, int go) {
  pid_t child = ::fork();
  if (child != 0) return child;
  void* at = ::mmap(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (at == MAP_FAILED) ::_exit(3);
  std::memcpy(at, arch::kTrampolineCode, sizeof(arch::kTrampolineCode));
  (void)!::write(ready, "r", 1);
  char byte;
  while (::read(go, &byte, 1) < 0) {
  }
  ::_exit(0);
}

// child_with_runner() run and waited for, then seized with injected calls started at its page
// (attach()). finish() lets it exit and checks it went on unharmed; a test that stops early still
// lets it go and reaps it.
class RunnerChild {
 public:
  explicit RunnerChild(uint64_t page) : page_(page) {
    if (::pipe(go_) != 0 || ::pipe(ready_) != 0) return;
    pid_ = child_with_runner(page, ready_[1], go_[0]);
    ::close(go_[0]);
    ::close(ready_[1]);
    char byte = 0;
    ready = pid_ > 0 && ::read(ready_[0], &byte, 1) == 1;
  }
  ~RunnerChild() {
    let_go();
    ::close(ready_[0]);
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

  ::testing::AssertionResult attach() {
    auto t = ptrace::Tracee::seize(pid_, PTRACE_O_TRACESYSGOOD);
    if (!t.ok()) return ::testing::AssertionFailure() << t.error().message;
    tracee.emplace(std::move(*t));
    if (Status st = tracee->interrupt(); !st.ok())
      return ::testing::AssertionFailure() << st.error().message;
    auto rs = ptrace::RemoteSyscalls::start(*tracee, page_);
    if (!rs.ok()) return ::testing::AssertionFailure() << rs.error().message;
    remote.emplace(std::move(*rs));
    return ::testing::AssertionSuccess();
  }

  void finish() {
    let_go();
    int status = 0;
    ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the child did not go on where it was (status " << status << ")";
  }

  bool ready = false;  // the child mapped its page
  std::optional<ptrace::Tracee> tracee;
  std::optional<ptrace::RemoteSyscalls> remote;  // on `tracee`, so dropped first

 private:
  // Detached, and told to exit.
  void let_go() {
    remote.reset();
    tracee.reset();
    if (go_[1] < 0) return;
    (void)!::write(go_[1], "x", 1);
    ::close(std::exchange(go_[1], -1));
  }

  uint64_t page_;
  int go_[2] = {-1, -1}, ready_[2] = {-1, -1};
  pid_t pid_ = -1;
};

TEST(RemoteSyscalls, ABatchRunsEveryCallAndNamesTheFirstFailure) {
  constexpr uint64_t kPage = 0x5a5a0000;
  RunnerChild runner_child(kPage);
  ASSERT_TRUE(runner_child.ready) << "the child could not map its page";
  pid_t child = runner_child.pid();
  ASSERT_TRUE(runner_child.attach());
  {
    auto& rs = runner_child.remote;
    uint64_t runner = kPage + arch::kBatchRunnerOffset, table = kPage + 64;
    std::vector<ptrace::BatchCall> calls = {
        {"getpid", SYS_getpid},
        {"munmap", SYS_munmap, {1, 4096}},  // not page-aligned: EINVAL
        {"getppid", SYS_getppid},
    };
    Status st = rs->call_batch(runner, table, 4096 - 64, calls);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("munmap in tid " + std::to_string(child)), std::string::npos)
        << st.error().message;
    EXPECT_EQ(calls[0].ret, child);
    EXPECT_EQ(calls[1].ret, -EINVAL);
    EXPECT_EQ(calls[2].ret, ::getpid()) << "a call after the failed one did not run";
    // More calls than the table holds at once: it runs in several rounds.
    std::vector<ptrace::BatchCall> many(150, ptrace::BatchCall{"getpid", SYS_getpid});
    ASSERT_TRUE(rs->call_batch(runner, table, 4096 - 64, many).ok());
    for (auto& c : many) ASSERT_EQ(c.ret, child);
    // A call that fails unjudged is only reported.
    std::vector<ptrace::BatchCall> quiet = {{"munmap", SYS_munmap, {1, 4096}, false}};
    EXPECT_TRUE(rs->call_batch(runner, table, 4096 - 64, quiet).ok());
    EXPECT_EQ(quiet[0].ret, -EINVAL);
    ASSERT_TRUE(rs->finish().ok());
  }
  runner_child.finish();
}

// call_batch_while: the tracer works while the tracee runs the batch, sees how far it got, and
// the tracee is stopped and usable again afterwards, also when the tracer's work failed.
TEST(RemoteSyscalls, ABatchRunsWhileTheTracerWorksAndSaysHowFarItGot) {
  constexpr uint64_t kPage = 0x5b5b0000;
  RunnerChild runner_child(kPage);
  ASSERT_TRUE(runner_child.ready) << "the child could not map its page";
  pid_t child = runner_child.pid();
  ASSERT_TRUE(runner_child.attach());
  {
    auto& t = runner_child.tracee;
    auto& rs = runner_child.remote;
    uint64_t runner = kPage + arch::kBatchRunnerOffset, table = kPage + 64;
    uint64_t nap = kPage + 3072;  // a timespec of 100 ms, past the table's room
    struct timespec ts = {0, 100'000'000};
    ASSERT_TRUE(t->write_memory(nap, &ts, sizeof ts).ok());
    auto batch = [&] {
      return std::vector<ptrace::BatchCall>{
          {"getpid", SYS_getpid}, {"nanosleep", SYS_nanosleep, {nap, 0}}, {"getppid", SYS_getppid}};
    };
    std::vector<ptrace::BatchCall> calls = batch();
    std::vector<size_t> seen;
    Status st = rs->call_batch_while(
        runner, table, 2048, calls, [&](const std::function<Result<size_t>()>& finished) -> Status {
          for (;;) {
            CKPT_TRY_ASSIGN(size_t n, finished());
            if (seen.empty() || seen.back() != n) seen.push_back(n);
            if (n == 3) return {};
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
        });
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_FALSE(seen.empty());
    EXPECT_LT(seen.front(), 2u) << "the tracer waited for the nap instead of working meanwhile";
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(seen.back(), 3u);
    EXPECT_EQ(calls[0].ret, child);
    EXPECT_EQ(calls[1].ret, 0);
    EXPECT_EQ(calls[2].ret, ::getpid());
    // The tracee is stopped again: a plain call works.
    auto pid = rs->call("getpid", SYS_getpid);
    ASSERT_TRUE(pid.ok()) << pid.error().message;
    EXPECT_EQ(*pid, child);
    // The tracer's work fails at once: the batch still ends before the error comes back.
    calls = batch();
    auto started = std::chrono::steady_clock::now();
    st = rs->call_batch_while(runner, table, 2048, calls,
                              [](const std::function<Result<size_t>()>&) -> Status {
                                return errorf("the tracer's own work failed");
                              });
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "the tracer's own work failed");
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(90))
        << "returned before the tracee had finished its batch";
    pid = rs->call("getpid", SYS_getpid);
    ASSERT_TRUE(pid.ok()) << pid.error().message;
    EXPECT_EQ(*pid, child);
    // More calls than one table holds: refused, nothing run.
    std::vector<ptrace::BatchCall> many(40, ptrace::BatchCall{"getpid", SYS_getpid});
    EXPECT_FALSE(rs->call_batch_while(runner, table, 2048, many, nullptr).ok());
    ASSERT_TRUE(rs->finish().ok());
  }
  runner_child.finish();
}

}  // namespace
}  // namespace ckpt
