#include "ptrace/rseq_config.hpp"

#include <sys/ptrace.h>

#include <fmt/format.h>

namespace ckpt::ptrace {

Result<RseqConfig> rseq_config(pid_t tid) {
  constexpr int kGetRseqConfiguration = 0x420f;
  RseqConfig rseq{};
  if (::ptrace(static_cast<__ptrace_request>(kGetRseqConfiguration), tid, sizeof rseq, &rseq) < 0)
    return sys_error(fmt::format("ptrace(PTRACE_GET_RSEQ_CONFIGURATION) tid {}", tid));
  return rseq;
}

}  // namespace ckpt::ptrace
