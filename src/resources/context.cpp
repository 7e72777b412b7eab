#include "resources/context.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <optional>
#include <vector>

#include "common/phase_clock.hpp"
#include "common/scoped_fd.hpp"
#include "proc/proc_file.hpp"

namespace ckpt {
namespace {

// Where the gadgets for a self-restoring injection are: the vdso, and every executable mapping,
// the C library's first (its __restore_rt comes early in its text).
std::vector<ptrace::CodeRange> code_ranges(const std::vector<proc::MapEntry>& maps) {
  std::vector<ptrace::CodeRange> out;
  for (const auto& m : maps) {
    if (!(m.prot & PROT_EXEC) && m.kind != proc::MapKind::vdso) continue;
    std::string name = m.path.substr(m.path.rfind('/') + 1);
    bool libc =
        name.starts_with("libc.so") || name.starts_with("libc-") || name.starts_with("ld-musl");
    out.push_back({m.start, m.end, m.kind == proc::MapKind::vdso, libc, m.offset, m.dev_major,
                   m.dev_minor, m.inode});
  }
  return out;
}

}  // namespace

std::string section_prefix(pid_t pid, bool root) {
  return root ? std::string() : fmt::format("proc.{}.", pid);
}

int HandedFds::find(std::string_view key) const {
  for (size_t i = 0; i < keys.size() && i < fds.size(); ++i)
    if (keys[i] == key) return fds[i];
  return -1;
}

Status read_remote(pid_t pid, uint64_t addr, void* buf, size_t len) {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return {};
  // Pages without read permission (PROT_NONE guards with contents, ...) need /proc/PID/mem.
  return proc::mem_file_io(pid, addr, buf, len, false);
}

Status write_remote(pid_t pid, uint64_t addr, const void* buf, size_t len) {
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return {};
  return proc::mem_file_io(pid, addr, const_cast<void*>(buf), len, true);
}

Status write_remote_runs(pid_t pid, std::span<const iovec> local, std::span<const iovec> remote) {
  constexpr size_t kMaxPairs = 1024;  // IOV_MAX
  for (size_t at = 0; at < local.size(); at += kMaxPairs) {
    size_t n = std::min(kMaxPairs, local.size() - at);
    size_t want = 0;
    for (size_t i = at; i < at + n; ++i) want += local[i].iov_len;
    ssize_t got = ::process_vm_writev(pid, local.data() + at, n, remote.data() + at, n, 0);
    if (got == static_cast<ssize_t>(want)) continue;
    // Short: a run the process cannot write itself; each again, the slow way where needed.
    for (size_t i = at; i < at + n; ++i)
      CKPT_TRY(write_remote(pid, reinterpret_cast<uint64_t>(remote[i].iov_base), local[i].iov_base,
                            local[i].iov_len));
  }
  return {};
}

struct DumpContext::OpenRemote {
  size_t index = 0;
  pid_t tid = 0;
  RemoteScratch scratch;
  std::vector<char> saved;  // what the scratch memory held before
  std::optional<ptrace::RemoteSyscalls> remote;
};

namespace {

Result<std::shared_ptr<DumpContext::OpenRemote>> open_remote(DumpContext& ctx, size_t index,
                                                             size_t scratch_size) {
  auto& t = ctx.threads.at(index).tracee;
  CKPT_TRY_ASSIGN(ptrace::Regs regs, t.regs());
  auto open = std::make_shared<DumpContext::OpenRemote>();
  open->index = index;
  open->tid = t.tid();
  uint64_t size = (scratch_size + 15) & ~uint64_t{15};
  open->scratch = {(arch::sp(regs) - arch::kRedZone - size) & ~uint64_t{15}, size};
  open->saved.resize(size);
  CKPT_TRY(read_remote(t.tid(), open->scratch.addr, open->saved.data(), size));
  PhaseClock clock(t.tid());
  // So that the thread goes back to where it was by itself if the dumper dies meanwhile.
  auto self_restore = ptrace::find_self_restore(t, ctx.pid, code_ranges(ctx.maps),
                                                open->scratch.addr, &ctx.gadgets);
  clock.mark("injection: gadgets");
  CKPT_TRY_ASSIGN(ptrace::RemoteSyscalls remote,
                  ptrace::RemoteSyscalls::start(t, ctx.syscall_insn, self_restore));
  open->remote.emplace(std::move(remote));
  clock.mark("injection: start");
  return open;
}

Status close_remote(DumpContext::OpenRemote& open) {
  Status fin = open.remote->finish();
  open.remote.reset();
  Status put_back = write_remote(open.tid, open.scratch.addr, open.saved.data(), open.saved.size());
  return fin.ok() ? put_back : fin;
}

}  // namespace

Status DumpContext::with_remote(
    size_t index, size_t scratch_size,
    const std::function<Status(ptrace::RemoteSyscalls&, RemoteScratch)>& fn) {
  if (held_remote && held_remote->index == index && scratch_size <= held_remote->scratch.size)
    return fn(*held_remote->remote, held_remote->scratch);
  CKPT_TRY_ASSIGN(auto open, open_remote(*this, index, scratch_size));
  Status result = fn(*open->remote, open->scratch);
  Status closed = close_remote(*open);
  return result.ok() ? closed : result;
}

Result<HeldRemote> HeldRemote::start(DumpContext& ctx, size_t index, size_t scratch_size) {
  if (ctx.held_remote) return make_error("internal error: an injection is held already");
  CKPT_TRY_ASSIGN(ctx.held_remote, open_remote(ctx, index, scratch_size));
  return HeldRemote(&ctx);
}

Status HeldRemote::end() {
  if (!ctx_) return {};
  auto open = std::move(std::exchange(ctx_, nullptr)->held_remote);
  return open ? close_remote(*open) : Status{};
}

}  // namespace ckpt
