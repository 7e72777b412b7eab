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

// The child's code ranges, with the file behind each when `with_files`.
std::vector<CodeRange> code_of(pid_t pid, bool with_files) {
  std::vector<CodeRange> code;
  auto maps = proc::read_maps(pid);
  if (!maps.ok()) return code;
  for (auto& m : *maps) {
    if (!(m.prot & PROT_EXEC) && m.kind != proc::MapKind::vdso) continue;
    CodeRange r{m.start, m.end, m.kind == proc::MapKind::vdso,
                m.path.find("libc.so") != std::string::npos};
    if (with_files)
      r = {r.start, r.end, r.vdso, r.preferred, m.offset, m.dev_major, m.dev_minor, m.inode};
    code.push_back(r);
  }
  return code;
}

// A paused child, seized and stopped.
class SelfRestoreKnown : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(child_.pid, 0);
    if (child_.pid == 0) {
      for (;;) ::pause();
    }
    auto t = Tracee::seize(child_.pid, PTRACE_O_TRACESYSGOOD);
    ASSERT_TRUE(t.ok()) << t.error().message;
    t_ = std::move(*t);
    ASSERT_TRUE(t_.interrupt().ok());
  }
  void TearDown() override { EXPECT_TRUE(t_.detach().ok()); }

  Child child_;
  Tracee t_;
};

TEST_F(SelfRestoreKnown, ASecondSearchUsesTheFirstOnesGadgetsWithoutScanning) {
  Tracee* t = &t_;
  Child& child = child_;
  auto code = code_of(child.pid, false);
  ASSERT_FALSE(code.empty());
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
}

TEST_F(SelfRestoreKnown, ACLibraryThatIsCkptsOwnFileHasTheGadgetWhereCkptsHasItCheckedFirst) {
  auto own = own_rt_sigreturn();
  ASSERT_TRUE(own.has_value()) << "ckpt's own C library has no rt_sigreturn gadget";
  Tracee* t = &t_;
  Child& child = child_;
  auto scanned = find_self_restore(*t, child.pid, code_of(child.pid, false), 0x1000);
  auto known = find_self_restore(*t, child.pid, code_of(child.pid, true), 0x1000);
  ASSERT_TRUE(scanned.has_value());
  ASSERT_TRUE(known.has_value());
  EXPECT_EQ(known->rt_sigreturn, scanned->rt_sigreturn);
  // The offset ckpt's copy gives, in the child's mapping of the same file.
  bool placed = false;
  for (auto& r : code_of(child.pid, true))
    if (r.inode == own->inode && r.file_offset <= own->offset &&
        r.start + (own->offset - r.file_offset) < r.end)
      placed = r.start + (own->offset - r.file_offset) == known->rt_sigreturn;
  EXPECT_TRUE(placed);
  // A mapping that only claims to be that file, at a place where the gadget is not: checked,
  // then scanned as before.
  auto claimed = code_of(child.pid, false);
  for (auto& r : claimed)
    if (r.preferred) {
      r.dev_major = own->dev_major;
      r.dev_minor = own->dev_minor;
      r.inode = own->inode;
      r.file_offset = own->offset;  // the candidate is the mapping's first byte
    }
  auto checked = find_self_restore(*t, child.pid, claimed, 0x1000);
  ASSERT_TRUE(checked.has_value());
  EXPECT_EQ(checked->rt_sigreturn, scanned->rt_sigreturn);
}

}  // namespace
}  // namespace ckpt::ptrace
