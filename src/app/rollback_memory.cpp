#include "app/rollback_memory.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "common/log.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::rollback {
namespace {

constexpr size_t kCopyBuffer = 8 << 20;
constexpr size_t kMaxIov = 1024;

// Pieces of `ranges` that fit one process_vm_* call: at most kMaxIov iovecs, kCopyBuffer bytes.
struct Batch {
  std::vector<iovec> remote;
  size_t bytes = 0;
};

std::vector<Batch> make_batches(const RangeSet& ranges) {
  std::vector<Batch> out(1);
  for (auto r : ranges) {
    uint64_t pos = r.start;
    while (pos < r.end) {
      Batch& b = out.back();
      if (b.remote.size() == kMaxIov || b.bytes == kCopyBuffer) {
        out.emplace_back();
        continue;
      }
      size_t n = std::min<uint64_t>(r.end - pos, kCopyBuffer - b.bytes);
      b.remote.push_back({reinterpret_cast<void*>(pos), n});
      b.bytes += n;
      pos += n;
    }
  }
  if (out.back().remote.empty()) out.pop_back();
  return out;
}

Status pwrite_all(int mem_fd, pid_t pid, uint64_t addr, const uint8_t* p, size_t len) {
  while (len > 0) {
    ssize_t n = ::pwrite(mem_fd, p, len, static_cast<off_t>(addr));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return sys_error(n < 0 ? errno : EIO, fmt::format("write /proc/{}/mem at {:#x}", pid, addr));
    addr += static_cast<uint64_t>(n);
    p += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

// Copies one batch through `buf`: read from `from`, write to `to`. Read through /proc/PID/mem,
// not process_vm_readv, whose pinning would give each page read a copy of its own in the
// snapshot when other snapshots still share it (proc_file.hpp, MemFile).
Status copy_batch(const proc::MemFile& from, pid_t to, int to_mem, const Batch& b,
                  std::vector<uint8_t>& buf, bool use_writev) {
  uint8_t* at = buf.data();
  for (auto& io : b.remote) {
    CKPT_TRY(from.read(reinterpret_cast<uint64_t>(io.iov_base), at, io.iov_len));
    at += io.iov_len;
  }
  iovec local{buf.data(), b.bytes};
  if (use_writev) {
    ssize_t n = ::process_vm_writev(to, &local, 1, b.remote.data(), b.remote.size(), 0);
    if (n == static_cast<ssize_t>(b.bytes)) return {};
    log::debug("rollback", "process_vm_writev pid {}: {}; using /proc/{}/mem", to, n, to);
  }
  const uint8_t* p = buf.data();
  for (auto& io : b.remote) {
    CKPT_TRY(pwrite_all(to_mem, to, reinterpret_cast<uint64_t>(io.iov_base), p, io.iov_len));
    p += io.iov_len;
  }
  return {};
}

}  // namespace

Result<uint64_t> copy_pages(pid_t from, pid_t to, int to_mem, const RangeSet& ranges,
                            const RangeSet& writable, std::vector<uint8_t>& buf) {
  uint64_t copied = 0;
  if (buf.size() < kCopyBuffer) buf.resize(kCopyBuffer);
  CKPT_TRY_ASSIGN(proc::MemFile source, proc::MemFile::open(from));
  for (int pass = 0; pass < 2; ++pass) {
    RangeSet part =
        pass == 0 ? range_intersect(ranges, writable) : range_subtract(ranges, writable);
    for (auto& b : make_batches(part)) {
      CKPT_TRY(copy_batch(source, to, to_mem, b, buf, pass == 0));
      copied += b.bytes;
    }
  }
  return copied;
}

Status read_remote(pid_t pid, uint64_t addr, void* buf, size_t len) {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n != static_cast<ssize_t>(len))
    return sys_error(n < 0 ? errno : EFAULT,
                     fmt::format("read {} bytes at {:#x} in pid {}", len, addr, pid));
  return {};
}

Status write_remote(pid_t pid, int mem_fd, uint64_t addr, const void* buf, size_t len) {
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return {};
  if (mem_fd < 0)
    return sys_error(n < 0 ? errno : EFAULT,
                     fmt::format("write {} bytes at {:#x} in pid {}", len, addr, pid));
  return pwrite_all(mem_fd, pid, addr, static_cast<const uint8_t*>(buf), len);
}

}  // namespace ckpt::rollback
