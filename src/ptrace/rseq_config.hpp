#pragma once
// PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13): where a thread's rseq area is, which glibc 2.35+
// registers for every thread. Declared here because Debian 12's headers predate it.
#include <sys/types.h>

#include <cstdint>

#include "common/result.hpp"

namespace ckpt::ptrace {

struct RseqConfig {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

// The rseq registration of `tid`, a thread this process traces and has stopped.
Result<RseqConfig> rseq_config(pid_t tid);

}  // namespace ckpt::ptrace
