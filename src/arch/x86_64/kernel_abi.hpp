#pragma once
// Layouts of kernel structures as the 64-bit x86 kernel reads and writes them through system
// calls injected into another process (libc's own types may differ from the kernel's).
#include <cstdint>

namespace ckpt::arch {

// struct sigaction of rt_sigaction.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

// struct sigevent of timer_create (64 bytes; the thread id is the first word of the union).
struct KernelSigevent {
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

// struct itimerspec and struct itimerval: interval first, then value, as (sec, nsec|usec).
struct TimerValue {
  int64_t interval[2];
  int64_t value[2];
};

// stack_t of sigaltstack: ss_sp, ss_flags (an int, padded), ss_size.
struct KernelStack {
  uint64_t sp;
  int32_t flags;
  int32_t pad;
  uint64_t size;
};

// struct sock_fprog as the 64-bit kernel reads it (seccomp).
struct KernelFprog {
  uint16_t len;
  uint16_t pad[3];
  uint64_t filter;
};

// The kernel's sigset for rt_* calls: one 64-bit word.
inline constexpr uint64_t kSigsetSize = 8;

}  // namespace ckpt::arch
