// TracerCrew: each member runs its jobs in order on one thread of its own (member 0 on the
// caller's), and what a member attached is its own: it alone may make ptrace requests on it, and
// its end kills the tracee (PTRACE_O_EXITKILL), which is why a crew outlives every attachment.
// RemoteSyscalls::call_batch: several calls in one resume through the restorer page's runner.
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "arch/arch.hpp"
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

TEST(RemoteSyscalls, ABatchRunsEveryCallAndNamesTheFirstFailure) {
  constexpr uint64_t kPage = 0x5a5a0000;
  int go[2], ready[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = child_with_runner(kPage, ready[1], go[0]);
  ASSERT_GT(child, 0);
  ::close(go[0]);
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child could not map its page";
  {
    auto t = ptrace::Tracee::seize(child, PTRACE_O_TRACESYSGOOD);
    ASSERT_TRUE(t.ok()) << t.error().message;
    ASSERT_TRUE(t->interrupt().ok());
    auto rs = ptrace::RemoteSyscalls::start(*t, kPage);
    ASSERT_TRUE(rs.ok()) << rs.error().message;
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
  ASSERT_EQ(::write(go[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child did not go on where it was (status " << status << ")";
}

}  // namespace
}  // namespace ckpt
