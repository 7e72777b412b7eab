#pragma once
// x86-64 registers as ptrace shows them, and the system call convention.
#include <sys/user.h>

#include <array>
#include <cstdint>

namespace ckpt::arch {

using Regs = user_regs_struct;

inline constexpr const char* kName = "x86_64";
// `syscall`; injected calls go through an existing one (the vdso's, or the restorer page's).
inline constexpr uint8_t kSyscallInsn[] = {0x0f, 0x05};
inline constexpr uint64_t kSyscallInsnLen = sizeof(kSyscallInsn);
// The restorer page's code: the syscall instruction, then a trap should anything run past it.
inline constexpr uint8_t kTrampolineCode[] = {0x0f, 0x05, 0xcc};
// Below the stack pointer: the red zone of the ABI belongs to the running function.
inline constexpr uint64_t kRedZone = 128;
// The regset holding the FPU/vector state in full (PTRACE_GETREGSET): XSAVE layout.
inline constexpr unsigned kExtendedRegset = 0x202;  // NT_X86_XSTATE
inline constexpr const char* kExtendedRegsetName = "NT_X86_XSTATE";

inline uint64_t pc(const Regs& r) {
  return r.rip;
}
inline uint64_t sp(const Regs& r) {
  return r.rsp;
}
// The call a thread stopped in (or -1), and what the kernel returned or will restart with.
inline int64_t syscall_nr(const Regs& r) {
  return static_cast<int64_t>(r.orig_rax);
}
inline int64_t syscall_ret(const Regs& r) {
  return static_cast<int64_t>(r.rax);
}

// Sets up `r` to make system call `nr` at the instruction `insn`.
inline void set_syscall(Regs& r, uint64_t insn, long nr, const std::array<uint64_t, 6>& args) {
  r.rip = insn;
  r.rax = static_cast<uint64_t>(nr);
  r.orig_rax = static_cast<uint64_t>(-1);
  r.rdi = args[0];
  r.rsi = args[1];
  r.rdx = args[2];
  r.r10 = args[3];
  r.r8 = args[4];
  r.r9 = args[5];
}

// The registers in the image, by name (ckpt show prints them; no layout is assumed by readers).
struct RegsRecord {
  Regs r{};
  template <class V>
  void visit(V& v) {
    v("r15", r.r15), v("r14", r.r14), v("r13", r.r13), v("r12", r.r12), v("rbp", r.rbp);
    v("rbx", r.rbx), v("r11", r.r11), v("r10", r.r10), v("r9", r.r9), v("r8", r.r8);
    v("rax", r.rax), v("rcx", r.rcx), v("rdx", r.rdx), v("rsi", r.rsi), v("rdi", r.rdi);
    v("orig_rax", r.orig_rax), v("rip", r.rip), v("cs", r.cs), v("eflags", r.eflags);
    v("rsp", r.rsp), v("ss", r.ss), v("fs_base", r.fs_base), v("gs_base", r.gs_base);
    v("ds", r.ds), v("es", r.es), v("fs", r.fs), v("gs", r.gs);
  }
};

}  // namespace ckpt::arch
