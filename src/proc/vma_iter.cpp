#include "proc/vma_iter.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "ckpt/vma_flags_bpf.hpp"
#include "common/log.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::proc {
namespace {

// libbpf prints to stderr by default: a machine without BPF would see its warnings at every
// dump. They go to ckpt's debug log instead.
int to_debug_log(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  int n = std::vsnprintf(line, sizeof line, format, args);
  std::string_view text(line, n < 0 ? 0 : std::min<size_t>(n, sizeof line - 1));
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  log::debug("bpf", "{}", text);
  return 0;
}

struct LinkCloser {
  void operator()(bpf_link* link) const { bpf_link__destroy(link); }
};

}  // namespace

void VmaIter::Closer::operator()(bpf_object* obj) const {
  bpf_object__close(obj);
}

Result<VmaIter> VmaIter::load() {
  static std::once_flag quiet;
  std::call_once(quiet, [] { libbpf_set_print(to_debug_log); });
  VmaIter it;
  it.obj_.reset(bpf_object__open_mem(kVmaFlagsBpf, sizeof kVmaFlagsBpf, nullptr));
  if (!it.obj_) return sys_error("opening the BPF vma iterator");
  if (int err = bpf_object__load(it.obj_.get()); err != 0)
    return sys_error(-err, "loading the BPF vma iterator");
  it.prog_ = bpf_object__find_program_by_name(it.obj_.get(), "vma_flags");
  if (!it.prog_) return make_error("the BPF vma iterator has no program vma_flags");
  return it;
}

Result<std::vector<RawVma>> VmaIter::read(pid_t pid) const {
  union bpf_iter_link_info info;
  std::memset(&info, 0, sizeof info);
  info.task.tid = static_cast<uint32_t>(pid);  // that one task, not every thread of it
  bpf_iter_attach_opts opts;
  std::memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.link_info = &info;
  opts.link_info_len = sizeof info;
  std::unique_ptr<bpf_link, LinkCloser> link(bpf_program__attach_iter(prog_, &opts));
  if (!link) return sys_error(fmt::format("pid {}: attaching the BPF vma iterator", pid));
  ScopedFd fd(bpf_iter_create(bpf_link__fd(link.get())));
  if (!fd) return sys_error(fmt::format("pid {}: starting the BPF vma iterator", pid));
  // A seq_file read may end within a record: the bytes are gathered first. With a task given,
  // this kernel's iterator does not end once its output took more than one buffer: after the
  // last mapping it goes round again from where the previous read stopped. Addresses only grow
  // within one round, so the first mapping that does not lies in the next (the caller still
  // checks the whole against maps).
  std::vector<RawVma> out;
  std::vector<char> bytes;
  constexpr size_t kChunk = 64 * 1024;
  size_t taken = 0;  // bytes of `bytes` already in `out`
  for (;;) {
    size_t had = bytes.size();
    bytes.resize(had + kChunk);
    ssize_t n = ::read(fd.get(), bytes.data() + had, kChunk);
    bytes.resize(had + static_cast<size_t>(std::max<ssize_t>(n, 0)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(fmt::format("pid {}: reading the BPF vma iterator", pid));
    if (n == 0) break;
    for (; bytes.size() - taken >= sizeof(RawVma); taken += sizeof(RawVma)) {
      RawVma v;
      std::memcpy(&v, bytes.data() + taken, sizeof v);
      if (!out.empty() && v.start < out.back().end) return out;
      out.push_back(v);
    }
  }
  if (bytes.size() != taken)
    return errorf("pid {}: the BPF vma iterator gave {} bytes, not whole records", pid,
                  bytes.size());
  return out;
}

}  // namespace ckpt::proc
