#pragma once
// Everything that depends on the processor architecture is reached through this header: the
// register set and how a system call is made, kernel structure layouts that differ between
// architectures, and the signal frame. ckpt is written for x86-64; a port adds a folder next to
// src/arch/x86_64 with the same names.
#if defined(__x86_64__)
#include "arch/x86_64/call_site.hpp"
#include "arch/x86_64/kernel_abi.hpp"
#include "arch/x86_64/regs.hpp"
#include "arch/x86_64/syscall_restart.hpp"
#else
#error "ckpt supports x86-64 only: port src/arch/x86_64 to this architecture first"
#endif
