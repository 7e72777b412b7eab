// The self-restore gadgets of a process are searched once per dump (DumpContext::gadgets): a
// search given the result of an earlier one answers from it, with the new frame top.
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "proc/maps.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt::ptrace {
namespace {

struct Child {
  pid_t pid = ::fork();
  ~Child() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
    }
  }
};

TEST(SelfRestoreKnown, ASecondSearchUsesTheFirstOnesGadgetsWithoutScanning) {
  Child child;
  ASSERT_GE(child.pid, 0);
  if (child.pid == 0) {
    for (;;) ::pause();
  }
  auto t = Tracee::seize(child.pid, PTRACE_O_TRACESYSGOOD);
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_TRUE(t->interrupt().ok());
  auto maps = proc::read_maps(child.pid);
  ASSERT_TRUE(maps.ok());
  std::vector<CodeRange> code;
  for (auto& m : *maps)
    if ((m.prot & PROT_EXEC) || m.kind == proc::MapKind::vdso)
      code.push_back({m.start, m.end, m.kind == proc::MapKind::vdso,
                      m.path.find("libc.so") != std::string::npos});
  SelfRestore known;
  auto first = find_self_restore(*t, child.pid, code, 0x1000, &known);
  ASSERT_TRUE(first.has_value());
  EXPECT_NE(known.syscall_then_ret, 0u);
  EXPECT_EQ(known.rt_sigreturn, first->rt_sigreturn);
  // No code to scan: only what is known can answer.
  EXPECT_FALSE(find_self_restore(*t, child.pid, {}, 0x2000).has_value());
  auto second = find_self_restore(*t, child.pid, {}, 0x2000, &known);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->syscall_then_ret, first->syscall_then_ret);
  EXPECT_EQ(second->rt_sigreturn, first->rt_sigreturn);
  EXPECT_EQ(second->frame_top, 0x2000u);
  EXPECT_TRUE(t->detach().ok());
}

}  // namespace
}  // namespace ckpt::ptrace
