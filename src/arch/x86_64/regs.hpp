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
inline constexpr uint8_t kTrampolineCode[] = {
    0x0f, 0x05, 0xcc,  // syscall; int3
    // The batch runner (RemoteSyscalls::call_batch), at kBatchRunnerOffset: for each 64-byte
    // entry at rbx {nr, six arguments, result} until an nr of -1, makes the call and stores rax
    // into the result; then int3.
    0x48, 0x8b, 0x03,        // loop: mov rax, [rbx]
    0x48, 0x83, 0xf8, 0xff,  // cmp rax, -1
    0x74, 0x24,              // je done
    0x48, 0x8b, 0x7b, 0x08,  // mov rdi, [rbx+8]
    0x48, 0x8b, 0x73, 0x10,  // mov rsi, [rbx+16]
    0x48, 0x8b, 0x53, 0x18,  // mov rdx, [rbx+24]
    0x4c, 0x8b, 0x53, 0x20,  // mov r10, [rbx+32]
    0x4c, 0x8b, 0x43, 0x28,  // mov r8, [rbx+40]
    0x4c, 0x8b, 0x4b, 0x30,  // mov r9, [rbx+48]
    0x0f, 0x05,              // syscall
    0x48, 0x89, 0x43, 0x38,  // mov [rbx+56], rax
    0x48, 0x83, 0xc3, 0x40,  // add rbx, 64
    0xeb, 0xd3,              // jmp loop
    0xcc,                    // done: int3
};
inline constexpr uint64_t kBatchRunnerOffset = 3;
// Sets up `r` to run the batch runner at `runner` over the table at `table`.
inline void set_batch(Regs& r, uint64_t runner, uint64_t table) {
  r.rip = runner;
  r.rbx = table;
  r.orig_rax = static_cast<uint64_t>(-1);
}
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
