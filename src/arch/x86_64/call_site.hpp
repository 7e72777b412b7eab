#pragma once
// Return addresses on x86-64: telling a word on a stack that is where a call returns to from one
// that only points into code, and the instruction that stops a thread arriving there.
#include <cstdint>
#include <span>

namespace ckpt::arch {

// int3: a thread that executes it stops with SIGTRAP, its rip one byte further.
inline constexpr uint8_t kBreakpointInsn = 0xcc;
inline constexpr uint64_t kBreakpointInsnLen = 1;
// How many bytes before an address follows_call() looks at: the longest call it knows.
inline constexpr size_t kLongestCall = 7;

// Whether `code`, the bytes that end right before an address, end with a call instruction, so
// that the address is one a call returns to: call rel32, and the indirect calls compilers emit to
// reach a function through a pointer (`call *%reg`, `call *disp(%reg)`, `call *disp(%rip)`).
bool follows_call(std::span<const uint8_t> code);

}  // namespace ckpt::arch
