#pragma once
// Probes whether the running kernel offers what the engine needs, by exercising each interface
// on a throwaway child rather than trusting version numbers (distributions backport and
// configurations disable).
#include <string>
#include <vector>

namespace ckpt::proc {

struct FeatureProbe {
  std::string name;  // stable identifier, e.g. "ptrace_seize"
  bool essential = false;
  bool ok = false;
  std::string detail;  // why it is missing, or a short note when present
};

// Runs every probe. Takes a few milliseconds; forks a few short-lived children.
std::vector<FeatureProbe> probe_kernel_features();

// Individual probes (each forks its own child when it needs one).
FeatureProbe probe_ptrace_seize();
FeatureProbe probe_ptrace_xstate();
FeatureProbe probe_ptrace_sigmask();
FeatureProbe probe_ptrace_peeksiginfo();
FeatureProbe probe_ptrace_rseq();
FeatureProbe probe_process_vm();
FeatureProbe probe_clone3_set_tid();
FeatureProbe probe_pidfd_getfd();
FeatureProbe probe_pagemap_scan();
FeatureProbe probe_prctl_mm_map();
FeatureProbe probe_prctl_tid_address();
FeatureProbe probe_kcmp();
FeatureProbe probe_memfd_create();
FeatureProbe probe_userfaultfd();
FeatureProbe probe_soft_dirty();
FeatureProbe probe_ns_last_pid();
FeatureProbe probe_timer_restore_ids();
FeatureProbe probe_timerfd_set_ticks();
// The BPF vma iterator (proc/vma_iter.hpp): loaded, and reading ckpt's own mappings as maps
// shows them. Optional: without it VmFlags come from smaps.
FeatureProbe probe_bpf_vma_iter();

}  // namespace ckpt::proc
