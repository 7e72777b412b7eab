// A BPF task_vma iterator: for each mapping of one process, its start, end and vm_flags, read by
// proc/vma_iter.cpp. Built with clang for the BPF target and embedded in libckpt. The kernel
// types are declared here with only the fields read; CO-RE relocates them to this kernel's
// layout (its BTF), so no vmlinux.h is needed.
#include <linux/bpf.h>
// After linux/bpf.h, whose types it uses.
#include <bpf/bpf_helpers.h>

struct seq_file;
struct task_struct;

struct bpf_iter_meta {
  struct seq_file* seq;
} __attribute__((preserve_access_index));

struct vm_area_struct {
  unsigned long vm_start;
  unsigned long vm_end;
  unsigned long vm_flags;
} __attribute__((preserve_access_index));

struct bpf_iter__task_vma {
  struct bpf_iter_meta* meta;
  struct task_struct* task;
  struct vm_area_struct* vma;
} __attribute__((preserve_access_index));

// Must match proc::RawVma.
struct raw_vma {
  unsigned long start;
  unsigned long end;
  unsigned long flags;
};

SEC("iter/task_vma")
int vma_flags(struct bpf_iter__task_vma* ctx) {
  struct vm_area_struct* vma = ctx->vma;
  if (!vma) return 0;
  struct raw_vma out = {vma->vm_start, vma->vm_end, vma->vm_flags};
  bpf_seq_write(ctx->meta->seq, &out, sizeof out);
  return 0;
}

// bpf_seq_write is a GPL-only helper.
char LICENSE[] SEC("license") = "GPL";
