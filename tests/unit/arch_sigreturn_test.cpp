// The x86-64 way back through rt_sigreturn (arch/x86_64/sigreturn.hpp): gadget patterns, the
// frame's layout, and a real thread whose tracer dies while it is parked on that way back.
#include <elf.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "arch/x86_64/sigreturn.hpp"
#include "proc/maps.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "ptrace/tracee.hpp"

namespace ckpt::arch::x86_64 {
namespace {

using Bytes = std::vector<uint8_t>;

TEST(SyscallThenRet, FindsTheVdsoShapeAndRefusesOthers) {
  // syscall; xor %edx,%edx; xor %ecx,%ecx; xor %r11d,%r11d; ret
  Bytes vdso_like = {0x90, 0x0f, 0x05, 0x31, 0xd2, 0x31, 0xc9, 0x45, 0x31, 0xdb, 0xc3};
  EXPECT_EQ(find_syscall_then_ret(vdso_like), std::optional<size_t>(1));
  // syscall; leave; ret: `leave` moves the stack pointer.
  EXPECT_EQ(find_syscall_then_ret(Bytes{0x0f, 0x05, 0xc9, 0xc3}), std::nullopt);
  // syscall; xor %esp,%esp; ret: clears the stack pointer.
  EXPECT_EQ(find_syscall_then_ret(Bytes{0x0f, 0x05, 0x31, 0xe4, 0xc3}), std::nullopt);
  // syscall; xor %r12d,%r12d (REX.B: r12, not rsp); ret
  EXPECT_EQ(find_syscall_then_ret(Bytes{0x0f, 0x05, 0x45, 0x31, 0xe4, 0xc3}),
            std::optional<size_t>(0));
  // syscall; xor (%rax),%eax (memory operand); ret
  EXPECT_EQ(find_syscall_then_ret(Bytes{0x0f, 0x05, 0x33, 0x00, 0xc3}), std::nullopt);
  // The second syscall of two is the one followed by ret.
  EXPECT_EQ(find_syscall_then_ret(Bytes{0x0f, 0x05, 0x5d, 0x0f, 0x05, 0xc3}),
            std::optional<size_t>(3));
}

TEST(SyscallThenRet, ThisKernelsVdsoHasOne) {
  auto* base = reinterpret_cast<const uint8_t*>(getauxval(AT_SYSINFO_EHDR));
  ASSERT_NE(base, nullptr);
  auto maps = proc::read_maps(getpid());
  ASSERT_TRUE(maps.ok());
  for (auto& m : *maps) {
    if (m.kind != proc::MapKind::vdso) continue;
    auto at = find_syscall_then_ret({reinterpret_cast<const uint8_t*>(m.start), m.size()});
    ASSERT_TRUE(at.has_value());
    const uint8_t* p = reinterpret_cast<const uint8_t*>(m.start) + *at;
    EXPECT_EQ(p[0], 0x0f);
    EXPECT_EQ(p[1], 0x05);
    return;
  }
  FAIL() << "no [vdso] mapping";
}

TEST(RtSigreturnGadget, FindsBothEncodingsAndOursInTheCLibrary) {
  EXPECT_EQ(find_rt_sigreturn(Bytes{0x90, 0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05}),
            std::optional<size_t>(1));
  EXPECT_EQ(find_rt_sigreturn(Bytes{0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05}),
            std::optional<size_t>(0));
  EXPECT_EQ(find_rt_sigreturn(Bytes{0xb8, 0x0e, 0, 0, 0, 0x0f, 0x05}), std::nullopt);
  // The handler glibc gives sigaction() returns through it.
  struct sigaction sa {};
  sa.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGURG, &sa, nullptr), 0);
  auto maps = proc::read_maps(getpid());
  ASSERT_TRUE(maps.ok());
  bool found = false;
  for (auto& m : *maps)
    if ((m.prot & PROT_EXEC) && m.path.find("libc.so") != std::string::npos)
      found = found || find_rt_sigreturn({reinterpret_cast<const uint8_t*>(m.start), m.size()});
  EXPECT_TRUE(found);
}

// An XSAVE area as ptrace gives it: legacy part, header with XSTATE_BV = x87|SSE, garbage in
// the software-reserved bytes (this kernel leaves them so).
Bytes fake_xstate(size_t size) {
  Bytes x(size);
  for (size_t i = 0; i < size; ++i) x[i] = static_cast<uint8_t>(i * 7 + 3);
  if (size < 576) return x;  // too short to hold a header: for the refusal test
  std::memset(x.data() + 512, 0, 64);
  x[512] = 0x3;
  return x;
}

TEST(SigreturnFrame, HoldsTheContextWhereTheKernelLooksForIt) {
  user_regs_struct regs{};
  regs.rip = 0x401000;
  regs.rsp = 0x7ffe0000;
  regs.rax = 42;
  regs.rbx = 0x1111;
  regs.r15 = 0x2222;
  regs.eflags = 0x246;
  regs.cs = 0x33;
  regs.ss = 0x2b;
  Bytes xstate = fake_xstate(832);
  uint64_t top = 0x7ffdff00 - 5;  // deliberately unaligned
  auto f = build_sigreturn_frame(regs, 0x8001, xstate, top, 0x7f0000001234);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_LE(f->addr + f->bytes.size(), top);
  EXPECT_EQ((f->addr + 8) % 16, 0u) << "the stack after `ret` is not 16-byte aligned";
  auto c = parse_sigreturn_frame(*f);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->magic_ok);
  EXPECT_EQ(c->return_address, 0x7f0000001234u);
  EXPECT_EQ(c->sigmask, 0x8001u);
  EXPECT_EQ(c->regs.rip, regs.rip);
  EXPECT_EQ(c->regs.rsp, regs.rsp);
  EXPECT_EQ(c->regs.rax, regs.rax);
  EXPECT_EQ(c->regs.rbx, regs.rbx);
  EXPECT_EQ(c->regs.r15, regs.r15);
  EXPECT_EQ(c->regs.eflags, regs.eflags);
  EXPECT_EQ(c->xfeatures & 0x3, 0x3u);
  EXPECT_EQ(c->xstate_size, 576u) << "x87 and SSE live in the first 576 bytes";
  ASSERT_EQ(c->xstate.size(), 576u);
  // Everything but the software-reserved bytes (464..511) is the thread's.
  EXPECT_TRUE(std::equal(xstate.begin(), xstate.begin() + 464, c->xstate.begin()));
  EXPECT_TRUE(std::equal(xstate.begin() + 512, xstate.begin() + 576, c->xstate.begin() + 512));
}

TEST(SigreturnFrame, RefusesWhatItCannotDescribe) {
  user_regs_struct regs{};
  regs.cs = 0x33;
  EXPECT_FALSE(build_sigreturn_frame(regs, 0, fake_xstate(100), 0x7ffe0000, 1).ok());
  regs.cs = 0x23;  // 32-bit code segment
  EXPECT_FALSE(build_sigreturn_frame(regs, 0, fake_xstate(832), 0x7ffe0000, 1).ok());
}

// A child that blocks SIGUSR1, then answers each SIGUSR2 with one byte on a pipe, forever.
int answer_fd = -1;
void answer(int) {
  (void)!write(answer_fd, "x", 1);
}

[[noreturn]] void victim(int fd) {
  answer_fd = fd;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  struct sigaction sa {};
  sa.sa_handler = answer;
  sigaction(SIGUSR2, &sa, nullptr);
  for (;;) pause();
}

std::string status_line(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 2);
  return "";
}

// The tracer seizes the victim, parks it on its way back (frame written, signals blocked), makes
// one call, and dies without undoing anything.
[[noreturn]] void tracer(pid_t victim_pid) {
  auto t = ptrace::Tracee::seize(victim_pid, PTRACE_O_TRACESYSGOOD);
  if (!t.ok() || !t->interrupt().ok()) _exit(2);
  auto maps = proc::read_maps(victim_pid);
  auto regs = t->regs();
  if (!maps.ok() || !regs.ok()) _exit(3);
  std::vector<ptrace::CodeRange> code;
  for (auto& m : *maps)
    if ((m.prot & PROT_EXEC) || m.kind == proc::MapKind::vdso)
      code.push_back({m.start, m.end, m.kind == proc::MapKind::vdso,
                      m.path.find("libc.so") != std::string::npos});
  auto sr = ptrace::find_self_restore(*t, victim_pid, code, regs->rsp - 256);
  if (!sr) _exit(4);
  auto rs = ptrace::RemoteSyscalls::start(*t, 0, sr);
  if (!rs.ok() || !rs->self_restoring()) _exit(5);
  auto pid = rs->call("getpid", SYS_getpid);
  if (!pid.ok() || *pid != victim_pid) _exit(6);
  if (status_line(victim_pid, "SigBlk") != "fffffffffffbfeff") _exit(7);
  _exit(0);  // with the victim stopped, parked, every signal blocked
}

TEST(SelfRestore, ATraceeWhoseTracerDiesReturnsToItsContextAndMask) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t v = fork();
  if (v == 0) victim(p[1]);
  pid_t t = fork();
  if (t == 0) tracer(v);
  int st = 0;
  ASSERT_EQ(waitpid(t, &st, 0), t);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "tracer status " << st;
  std::string tracer_pid, state, blocked;
  for (int i = 0; i < 200; ++i) {
    tracer_pid = status_line(v, "TracerPid");
    state = status_line(v, "State");
    blocked = status_line(v, "SigBlk");
    if (tracer_pid == "0" && state.rfind("S", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(tracer_pid, "0");
  EXPECT_EQ(state.substr(0, 1), "S") << state;
  EXPECT_EQ(blocked, "0000000000000200") << "SIGUSR1 alone, as the victim set it";
  // It still handles signals and goes back to pause().
  for (int i = 0; i < 3; ++i) {
    kill(v, SIGUSR2);
    char c = 0;
    EXPECT_EQ(read(p[0], &c, 1), 1);
  }
  kill(v, SIGKILL);
  waitpid(v, &st, 0);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the victim ended with " << st;
  close(p[0]);
  close(p[1]);
}

// Kills and reaps a forked child on every way out of a test: a failed ASSERT must not leave it
// running with the test's output pipe open (ctest would wait for it until its timeout).
struct ChildGuard {
  pid_t pid;
  ~ChildGuard() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
    }
  }
};

// A frame that would reach into a page the thread cannot touch (a guard page below a thread's
// stack) is not written there, although /proc/PID/mem could: rt_sigreturn reads it as the thread.
TEST(SelfRestore, NoFrameGoesWhereTheThreadCannotRead) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t v = fork();
  ChildGuard victim_guard{v};
  if (v == 0) {
    auto* two = static_cast<uint8_t*>(
        mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(two, 4096, PROT_NONE);
    uint64_t upper = reinterpret_cast<uint64_t>(two) + 4096;
    (void)!write(p[1], &upper, sizeof upper);
    for (;;) pause();
  }
  uint64_t upper = 0;
  ASSERT_EQ(read(p[0], &upper, sizeof upper), static_cast<ssize_t>(sizeof upper));
  auto t = ptrace::Tracee::seize(v, PTRACE_O_TRACESYSGOOD);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->interrupt().ok());
  auto maps = proc::read_maps(v);
  ASSERT_TRUE(maps.ok());
  // The C library first, as the dumper has it: find_self_restore scans 16 MiB of code at most,
  // less than the text of this test under ASan, which holds no rt_sigreturn gadget.
  std::vector<ptrace::CodeRange> code;
  for (auto& m : *maps)
    if ((m.prot & PROT_EXEC) || m.kind == proc::MapKind::vdso)
      code.push_back({m.start, m.end, m.kind == proc::MapKind::vdso,
                      m.path.find("libc.so") != std::string::npos});
  auto sr = ptrace::find_self_restore(*t, v, code, upper + 512);  // 512 bytes above the guard page
  ASSERT_TRUE(sr.has_value());
  {
    auto rs = ptrace::RemoteSyscalls::start(*t, sr->syscall_then_ret, sr);
    ASSERT_TRUE(rs.ok()) << rs.error().message;
    EXPECT_FALSE(rs->self_restoring()) << "a frame went below " << std::hex << upper;
    auto pid = rs->call("getpid", SYS_getpid);
    ASSERT_TRUE(pid.ok()) << pid.error().message;
    EXPECT_EQ(*pid, v);
    EXPECT_TRUE(rs->finish().ok());
  }
  std::vector<uint8_t> guard(4096, 1);
  ASSERT_TRUE(t->read_memory(upper - 4096, guard.data(), guard.size()).ok());
  EXPECT_EQ(std::count(guard.begin(), guard.end(), 0), 4096) << "the guard page was written";
  ASSERT_TRUE(t->detach().ok());
  close(p[0]);
  close(p[1]);
}

}  // namespace
}  // namespace ckpt::arch::x86_64
