#pragma once
// The raw vm_flags of a process's mappings, read by a BPF task_vma iterator
// (bpf/vma_flags.bpf.c).
//
// Only /proc/PID/smaps prints VmFlags, and it walks every page table entry for its page counts:
// 20-22 ms for a process with 1 GiB of memory here, at every dump. The iterator reads the same
// vm_flags in about 0.1 ms at any size. Loading it needs CAP_BPF and CAP_PERFMON (root) and a
// kernel with BTF; without them load() fails and the caller reads smaps. The bits are the
// kernel's VM_* values, which no ABI fixes: resources/vm_flags_fast.cpp uses them only once it
// has checked its reading of them against smaps on mappings of its own.
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/result.hpp"

struct bpf_object;
struct bpf_program;

namespace ckpt::proc {

// One mapping as the kernel keeps it (the layout bpf/vma_flags.bpf.c writes).
struct RawVma {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t flags = 0;  // vm_flags
};
static_assert(sizeof(RawVma) == 24, "three 64-bit words, as the BPF program writes them");

class VmaIter {
 public:
  // Verifies and loads the program (about 12 ms here: libbpf reads the kernel's BTF).
  static Result<VmaIter> load();

  // The mappings of process `pid` in address order. Mappings that fill more than one of the
  // kernel's buffers are read in turns, not at one instant: the caller compares them with maps.
  // A process without memory (a zombie, a kernel thread) has none. [vsyscall] is no mapping of
  // the process and is not among them (maps shows it).
  Result<std::vector<RawVma>> read(pid_t pid) const;

 private:
  struct Closer {
    void operator()(bpf_object* obj) const;
  };
  std::unique_ptr<bpf_object, Closer> obj_;
  bpf_program* prog_ = nullptr;
};

}  // namespace ckpt::proc
