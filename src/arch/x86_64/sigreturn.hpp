#pragma once
// x86-64 pieces of a thread's way back to its saved context through rt_sigreturn.
//
// A dump runs system calls inside a stopped thread by changing its registers. If the process that
// traces it dies meanwhile, the kernel lets the thread run on with those registers. To make that
// harmless the thread is given, before anything changes, a way home that needs no tracer: an
// rt_sigreturn frame on its stack (the layout the kernel itself writes when it delivers a signal:
// struct rt_sigframe, ucontext, sigcontext, an XSAVE area with its software-reserved bytes), and
// calls are injected through a `syscall` whose next instructions reach a `ret` that pops the
// address of an `rt_sigreturn` gadget. Whatever the moment the tracer vanishes, the call completes,
// `ret` jumps to the gadget and the kernel puts back registers, signal mask and FPU state.
#include <sys/user.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/result.hpp"

namespace ckpt::arch::x86_64 {

// Bytes a gadget spans at most: memory scanned in chunks overlaps by this much.
inline constexpr size_t kMaxGadgetLength = 32;

// Offset in `code` of a `syscall` instruction from which only register-clearing `xor`s lead to a
// `ret` (this kernel's vdso has `syscall; xor %edx,%edx; ...; ret`): after the call, the thread
// takes its next address from the top of its stack and touches nothing else.
std::optional<size_t> find_syscall_then_ret(std::span<const uint8_t> code);

// Offset in `code` of `mov $15, %eax` or `mov $15, %rax` directly followed by `syscall`: the
// rt_sigreturn call every C library has as the return address of its signal handlers (glibc's
// and musl's __restore_rt).
std::optional<size_t> find_rt_sigreturn(std::span<const uint8_t> code);

struct SigreturnFrame {
  uint64_t addr = 0;  // its lowest byte: the stack pointer to inject with (the gadget's address)
  std::vector<uint8_t> bytes;  // what goes at addr, up to the `top` it was built for
};

// An rt_sigreturn frame that returns the thread to `regs`, `sigmask` and `xstate` (as read with
// PTRACE_GETREGSET NT_X86_XSTATE), laid out below `top` as the kernel lays out a signal frame (the
// XSAVE area 64-byte aligned at the top), starting with `rt_sigreturn` as the return address.
// Fails on an XSAVE area it cannot describe (too short) or a thread not in 64-bit mode.
Result<SigreturnFrame> build_sigreturn_frame(const user_regs_struct& regs, uint64_t sigmask,
                                             std::span<const uint8_t> xstate, uint64_t top,
                                             uint64_t rt_sigreturn);

// What a frame restores, read back from its bytes: for tests.
struct FrameContents {
  user_regs_struct regs{};
  uint64_t sigmask = 0;
  uint64_t return_address = 0;
  std::vector<uint8_t> xstate;  // the XSAVE area up to its xstate_size
  uint32_t xstate_size = 0;
  uint64_t xfeatures = 0;
  bool magic_ok = false;  // both FP_XSTATE magics where the kernel checks them
};
std::optional<FrameContents> parse_sigreturn_frame(const SigreturnFrame& f);

}  // namespace ckpt::arch::x86_64
