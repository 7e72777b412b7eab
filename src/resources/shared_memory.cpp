#include "resources/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <functional>
#include <memory>

#include "common/fs_util.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::shared_memory {
namespace {

constexpr size_t kChunk = 1 << 20;
constexpr std::string_view kMemfd = "/memfd:";

std::string section_name(int id) {
  return fmt::format("shm.{}", id);
}

}  // namespace

// The parts of the object that hold data (tmpfs knows its holes): only they are saved.
Result<std::vector<std::pair<uint64_t, uint64_t>>> data_ranges(int fd, uint64_t size) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  off_t at = 0;
  while (static_cast<uint64_t>(at) < size) {
    off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0) return std::vector<std::pair<uint64_t, uint64_t>>{{0, size}};
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = static_cast<off_t>(size);
    out.emplace_back(data, hole - data);
    at = hole;
  }
  return out;
}

Status copy_out(int fd, const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                image::SectionWriter& out, const std::string& what) {
  std::unique_ptr<std::byte[]> buf(new std::byte[kChunk]);
  for (auto [off, len] : ranges) {
    while (len > 0) {
      ssize_t n = ::pread(fd, buf.get(), std::min<uint64_t>(len, kChunk), static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return sys_error(n == 0 ? EIO : errno, fmt::format("read {} at {}", what, off));
      CKPT_TRY(out.write({buf.get(), static_cast<size_t>(n)}));
      off += static_cast<uint64_t>(n);
      len -= static_cast<uint64_t>(n);
    }
  }
  return out.finish();
}

Status fill_from_section(const image::Store& store, const image::GenerationInfo& gen,
                         const std::string& section, const std::vector<schema::Range>& data,
                         uint64_t size, int fd) {
  CKPT_TRY_ASSIGN(auto reader, store.open_section(gen, section));
  std::unique_ptr<std::byte[]> buf(new std::byte[kChunk]);
  for (auto& r : data) {
    if (r.end < r.start || r.end > size)
      return errorf("{}: data range {}-{} lies outside its {} bytes", section, r.start, r.end,
                    size);
    uint64_t off = r.start, len = r.end - r.start;
    while (len > 0) {
      size_t want = std::min<uint64_t>(len, kChunk), got = 0;
      while (got < want) {
        CKPT_TRY_ASSIGN(size_t n, reader->read({buf.get() + got, want - got}));
        if (n == 0) return errorf("section {} ends early", section);
        got += n;
      }
      if (::pwrite(fd, buf.get(), want, static_cast<off_t>(off)) != static_cast<ssize_t>(want))
        return sys_error(fmt::format("write {} at {}", section, off));
      off += want;
      len -= want;
    }
  }
  return {};
}

namespace {

// Shared anonymous memory is a file of the kernel's own; a mapping of it in this process gives
// a descriptor for a new one (through map_files), which maps as "/dev/zero (deleted)" again.
Result<ScopedFd> new_anonymous_object(uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return sys_error(fmt::format("mmap {} bytes of shared memory", size));
  auto start = reinterpret_cast<uint64_t>(p);
  std::string link = fmt::format("/proc/self/map_files/{:x}-{:x}", start, start + size);
  ScopedFd fd(::open(link.c_str(), O_RDWR | O_CLOEXEC));
  int err = errno;
  ::munmap(p, size);
  if (!fd) return sys_error(err, fmt::format("open {}", link));
  return fd;
}

Result<ScopedFd> new_object(const schema::ShmObject& o) {
  const std::string& path = o.path;
  uint64_t size = o.size;
  if (path.rfind(kMemfd, 0) != 0) return new_anonymous_object(size);
  unsigned flags = MFD_CLOEXEC | (o.seals ? MFD_ALLOW_SEALING : 0);
  ScopedFd fd(::memfd_create(path.substr(kMemfd.size()).c_str(), flags));
  if (!fd) return sys_error(fmt::format("memfd_create {}", path));
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
    return sys_error(fmt::format("ftruncate {} to {}", path, size));
  return fd;
}

// Once the contents are in: a write seal would refuse them.
Status seal(const schema::ShmObject& o, int fd) {
  if (!o.seals || *o.seals == 0) return {};
  if (::fcntl(fd, F_ADD_SEALS, *o.seals) < 0)
    return sys_error(fmt::format("fcntl(F_ADD_SEALS, {:#x})", *o.seals));
  return {};
}

Status fill(const image::Store& store, const image::GenerationInfo& gen, const schema::ShmObject& o,
            int fd) {
  return fill_from_section(store, gen, section_name(o.id), o.data, o.size, fd);
}

}  // namespace

bool is_object(const proc::MapEntry& m) {
  return m.shared && m.inode != 0 && m.deleted && m.kind == proc::MapKind::file &&
         (m.path == "/dev/zero" || m.path.rfind(kMemfd, 0) == 0);
}

std::string handed_key(int id) {
  return fmt::format("shm:{}", id);
}

namespace {

// The id of the object at (dev, ino), saving it (read through `open`) if the tree has not met it.
Result<int32_t> save_object(DumpContext& ctx, std::pair<uint64_t, uint64_t> key,
                            const std::string& path, const std::string& what,
                            const std::function<Result<ScopedFd>()>& open) {
  auto& ids = ctx.tree->shm_ids;
  auto [it, added] = ids.emplace(key, static_cast<int>(ids.size()));
  if (!added) return it->second;
  CKPT_TRY_ASSIGN(ScopedFd fd, open());
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return sys_error(fmt::format("stat {}", what));
  auto size = static_cast<uint64_t>(st.st_size);
  schema::ShmObject o{it->second, path, size, {}, {}};
  if (path.rfind(kMemfd, 0) == 0) {
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0) return sys_error(fmt::format("fcntl(F_GET_SEALS) of {}", what));
    if (seals & F_SEAL_FUTURE_WRITE)
      return errorf("{} is sealed against future writes, which ckpt cannot save yet", what);
    o.seals = static_cast<uint32_t>(seals);
  }
  CKPT_TRY_ASSIGN(auto ranges, data_ranges(fd.get(), size));
  CKPT_TRY_ASSIGN(image::SectionWriter * out, ctx.writer->begin_section(section_name(it->second)));
  CKPT_TRY(copy_out(fd.get(), ranges, *out, what));
  for (auto& [off, len] : ranges) o.data.push_back({off, off + len});
  ctx.tree->image.shm_objects.push_back(std::move(o));
  return it->second;
}

}  // namespace

Status save(DumpContext& ctx, const proc::MapEntry& m, schema::Vma& v) {
  std::string what = fmt::format("pid {}: shared memory {} at {:#x}", ctx.pid, m.path, m.start);
  std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", ctx.pid, m.start, m.end);
  CKPT_TRY_ASSIGN(v.shm, save_object(ctx, {uint64_t{m.dev_major} << 32 | m.dev_minor, m.inode},
                                     m.path, what, [&] { return open_file(link, O_RDONLY); }));
  return {};
}

Result<int32_t> save_memfd(DumpContext& ctx, pid_t holder, int fd, const std::string& link,
                           const struct stat& st) {
  constexpr std::string_view kSuffix = " (deleted)";
  std::string path = link.substr(0, link.size() - kSuffix.size());
  std::string what = holder == ::getpid()
                         ? fmt::format("pid {}: {} in flight", ctx.pid, path.substr(1))
                         : fmt::format("pid {}: fd {} ({})", holder, fd, path.substr(1));
  std::string proc_fd = proc::proc_path(holder, fmt::format("fd/{}", fd));
  std::pair<uint64_t, uint64_t> key{uint64_t{major(st.st_dev)} << 32 | minor(st.st_dev), st.st_ino};
  return save_object(ctx, key, path, what, [&] { return open_file(proc_fd, O_RDONLY); });
}

Result<std::vector<std::pair<int32_t, ScopedFd>>> recreate(
    const image::Store& store, const image::GenerationInfo& gen,
    const std::vector<schema::ShmObject>& objects) {
  std::vector<std::pair<int32_t, ScopedFd>> out;
  for (auto& o : objects) {
    auto fd = new_object(o);
    Status st = fd.ok() ? fill(store, gen, o, fd->get()) : fd.error();
    if (st.ok()) st = seal(o, fd->get());
    if (!st.ok()) return st.error().wrap(fmt::format("restore the shared memory {}", o.path));
    out.emplace_back(o.id, std::move(*fd));
  }
  return out;
}

}  // namespace ckpt::shared_memory
