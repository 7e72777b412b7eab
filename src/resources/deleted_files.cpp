#include "resources/deleted_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "common/fs_util.hpp"
#include "proc/proc_file.hpp"
#include "resources/fds/fd_access.hpp"

namespace ckpt::deleted_files {
namespace {

constexpr size_t kChunk = 1 << 20;

std::string section_name(int id) {
  return fmt::format("files.deleted.{}", id);
}

// The process's own open file when it can be read (pread leaves its offset alone): opening the
// file anew would break a lease on it and wait, the holder being frozen, for the kernel's
// lease-break-time. A write-only one is opened again, without waiting.
Result<ScopedFd> readable_copy(pid_t pid, int fd, const std::string& path) {
  auto borrowed = fds::borrow_fd(pid, fd);
  if (borrowed.ok() && (::fcntl(borrowed->get(), F_GETFL) & O_ACCMODE) != O_WRONLY)
    return std::move(*borrowed);
  return open_file(path, O_RDONLY | O_NONBLOCK);
}

Status copy_out(ScopedFd src, const std::string& path, uint64_t size, image::SectionWriter& out) {
  std::vector<std::byte> buf(kChunk);
  uint64_t done = 0;
  for (;;) {
    ssize_t n = ::pread(src.get(), buf.data(), buf.size(), static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(fmt::format("read {} at offset {}", path, done));
    if (n == 0) break;
    CKPT_TRY(out.write(std::span(buf.data(), static_cast<size_t>(n))));
    done += static_cast<uint64_t>(n);
  }
  if (done != size)
    return errorf("the deleted file changed size while it was saved ({} bytes, was {})", done,
                  size);
  return out.finish();
}

// The inode's id in the tree, and whether it is met for the first time.
std::pair<int32_t, bool> claim(DumpContext& ctx, const struct stat& st) {
  auto& ids = ctx.tree->deleted_ids;
  auto key = std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
  auto [it, added] = ids.emplace(key, static_cast<int>(ids.size()));
  return {it->second, added};
}

schema::DeletedFile describe(int32_t id, const std::string& path, const struct stat& st) {
  schema::DeletedFile d{id,
                        path,
                        S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0,
                        static_cast<uint32_t>(st.st_mode & 07777),
                        static_cast<uint32_t>(st.st_uid),
                        static_cast<uint32_t>(st.st_gid),
                        S_ISDIR(st.st_mode)};
  return d;
}

// Saves a regular file's contents read from `open_src()` the first time the tree meets it.
template <class OpenSource>
Result<int32_t> save_regular(DumpContext& ctx, const std::string& path, const struct stat& st,
                             OpenSource open_src) {
  auto [id, added] = claim(ctx, st);
  if (!added) return id;
  CKPT_TRY_ASSIGN(image::SectionWriter * out, ctx.writer->begin_section(section_name(id)));
  auto src = open_src();
  Status copied = src.ok()
                      ? copy_out(std::move(*src), path, static_cast<uint64_t>(st.st_size), *out)
                      : Status(src.error());
  if (!copied.ok())
    return copied.error().wrap(fmt::format("pid {}: deleted file {}", ctx.pid, path));
  ctx.tree->image.deleted_files.push_back(describe(id, path, st));
  return id;
}

int32_t save_directory(DumpContext& ctx, const std::string& path, const struct stat& st) {
  auto [id, added] = claim(ctx, st);
  if (added) ctx.tree->image.deleted_files.push_back(describe(id, path, st));
  return id;
}

}  // namespace

Result<int32_t> save(DumpContext& ctx, int fd, const std::string& path, const struct stat& st) {
  pid_t pid = ctx.pid;
  if (S_ISDIR(st.st_mode)) return save_directory(ctx, path, st);
  if (!S_ISREG(st.st_mode))
    return errorf("pid {}: fd {} is the deleted special file {}, which ckpt cannot save", pid, fd,
                  path);
  if (static_cast<uint64_t>(st.st_size) > kMaxDeletedFileSize)
    return errorf(
        "pid {}: fd {} is the deleted file {} of {} bytes; ckpt saves deleted files of at most "
        "{} bytes",
        pid, fd, path, st.st_size, kMaxDeletedFileSize);
  std::string proc_fd = proc::proc_path(pid, fmt::format("fd/{}", fd));
  return save_regular(ctx, path, st, [&] { return readable_copy(pid, fd, proc_fd); });
}

Result<std::optional<int32_t>> save_mapping(DumpContext& ctx, const proc::MapEntry& m) {
  std::string link = fmt::format("/proc/{}/map_files/{:x}-{:x}", ctx.pid, m.start, m.end);
  struct stat st;
  if (::stat(link.c_str(), &st) < 0) return sys_error(fmt::format("stat {} ({})", link, m.path));
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxDeletedFileSize)
    return std::optional<int32_t>();
  CKPT_TRY_ASSIGN(int32_t id,
                  save_regular(ctx, m.path, st, [&] { return open_file(link, O_RDONLY); }));
  return std::optional<int32_t>(id);
}

namespace {

// What /proc/PID/`name` (cwd, exe) led to when it was removed: its old path and its stat.
// Nothing when it was not removed (a name may merely end in " (deleted)": it has links then).
struct Removed {
  std::string path, proc_link;
  struct stat st;
};
Result<std::optional<Removed>> removed_target(pid_t pid, const char* name,
                                              const std::string& link) {
  constexpr std::string_view kSuffix = " (deleted)";
  if (!link.ends_with(kSuffix)) return std::optional<Removed>();
  Removed r{link.substr(0, link.size() - kSuffix.size()), proc::proc_path(pid, name), {}};
  if (::stat(r.proc_link.c_str(), &r.st) < 0) return sys_error(fmt::format("stat {}", r.proc_link));
  if (r.st.st_nlink != 0) return std::optional<Removed>();
  return std::optional<Removed>(std::move(r));
}

}  // namespace

Result<std::optional<int32_t>> save_cwd(DumpContext& ctx, const std::string& link) {
  CKPT_TRY_ASSIGN(auto cwd, removed_target(ctx.pid, "cwd", link));
  if (!cwd || !S_ISDIR(cwd->st.st_mode)) return std::optional<int32_t>();
  return std::optional<int32_t>(save_directory(ctx, cwd->path, cwd->st));
}

Result<std::optional<int32_t>> save_exe(DumpContext& ctx, const std::string& link) {
  CKPT_TRY_ASSIGN(auto exe, removed_target(ctx.pid, "exe", link));
  if (!exe) return std::optional<int32_t>();
  if (!S_ISREG(exe->st.st_mode) || static_cast<uint64_t>(exe->st.st_size) > kMaxDeletedFileSize)
    return errorf(
        "pid {}: its executable {} was deleted while it runs and has {} bytes; ckpt saves "
        "deleted files of at most {} bytes",
        ctx.pid, exe->path, exe->st.st_size, kMaxDeletedFileSize);
  CKPT_TRY_ASSIGN(int32_t id, save_regular(ctx, exe->path, exe->st,
                                           [&] { return open_file(exe->proc_link, O_RDONLY); }));
  return std::optional<int32_t>(id);
}

std::string handed_key(int32_t id) {
  return fmt::format("deleted:{}", id);
}

namespace {

std::string unique_name(const std::filesystem::path& dir, int id) {
  std::random_device rd;
  return (dir / fmt::format(".ckpt-deleted-{}-{}-{:08x}", ::getpid(), id, rd())).string();
}

// An unlinked regular file in `path`'s directory that shows as "<path> (deleted)" when the
// original name is free (else under a unique name in the same directory). With O_TMPFILE the
// file gets a name only once it is filled.
Result<ScopedFd> make_unlinked(const std::string& path, int id, mode_t mode) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  int tmp = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (tmp >= 0) return ScopedFd(tmp);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    return sys_error(
        fmt::format("create a file in {} for the deleted file {}", dir.string(), path));
  for (const std::string& name : {path, unique_name(dir, id)}) {
    int fd = ::open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) return sys_error(fmt::format("create {} for the deleted file {}", name, path));
    ::unlink(name.c_str());
    return ScopedFd(fd);
  }
  return errorf("create a file for the deleted file {}: every name is taken", path);
}

// Gives an O_TMPFILE file the original name just long enough to open it by that name: the
// dentry an open file keeps is what /proc shows, and an O_TMPFILE's own is "#INODE". Returns the
// fd to use from then on.
Result<ScopedFd> name_then_unlink(ScopedFd fd, const std::string& path, int id) {
  std::string self = fmt::format("/proc/self/fd/{}", fd.get());
  std::string dir = std::filesystem::path(path).parent_path().string();
  for (const std::string& name : {path, unique_name(dir, id)}) {
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) < 0) {
      if (errno == EEXIST) continue;
      if (errno == ENOENT) return fd;  // not an O_TMPFILE file: already unlinked by its name
      return sys_error(fmt::format("link {}", name));
    }
    ScopedFd named(::open(name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    int err = errno;
    struct stat a, b;
    bool same = named && ::fstat(named.get(), &a) == 0 && ::fstat(fd.get(), &b) == 0 &&
                a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (::unlink(name.c_str()) < 0) return sys_error(fmt::format("unlink {}", name));
    if (!named) return sys_error(err, fmt::format("open {}", name));
    if (!same) return errorf("{} was replaced while ckpt recreated it", name);
    return named;
  }
  return fd;  // every name taken: stays an anonymous O_TMPFILE file
}

Status fill(const image::Store& store, const image::GenerationInfo& gen,
            const schema::DeletedFile& d, int fd) {
  int id = d.id;
  CKPT_TRY_ASSIGN(auto reader, store.open_section(gen, section_name(id)));
  std::vector<std::byte> buf(kChunk);
  uint64_t done = 0;
  for (;;) {
    CKPT_TRY_ASSIGN(size_t n, reader->read(buf));
    if (n == 0) break;
    if (done + n > d.size)
      return errorf("section {} holds more than the file's {} bytes", section_name(id), d.size);
    CKPT_TRY(write_all(fd, std::span(buf.data(), n), d.path));
    done += n;
  }
  if (done != d.size)
    return errorf("section {} holds {} bytes, the file had {}", section_name(id), done, d.size);
  return {};
}

Status set_owner_and_mode(const schema::DeletedFile& d, int fd) {
  if (::geteuid() == 0 && ::fchown(fd, d.uid, d.gid) < 0) return sys_error("fchown");
  if (::fchmod(fd, d.mode & 07777) < 0) return sys_error("fchmod");
  return {};
}

// The ancestors of `dir` that do not exist, made (mode 0700) from the top down, so that a
// directory whose parent was removed too can be placed where it was. Returns them, deepest last.
Result<std::vector<std::string>> make_missing_parents(const std::filesystem::path& dir,
                                                      const std::string& what) {
  std::vector<std::filesystem::path> missing;
  for (auto p = dir; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0) break;
    missing.push_back(p);
  }
  std::vector<std::string> made;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) < 0) {
      int err = errno;
      for (auto m = made.rbegin(); m != made.rend(); ++m) ::rmdir(m->c_str());
      return sys_error(err, fmt::format("{}: its parent {} is gone too and cannot be made again",
                                        what, it->string()));
    }
    made.push_back(it->string());
  }
  return made;
}

// A directory made under its old name (or a unique one beside it), opened and removed again:
// it shows as "<path> (deleted)" and has no entries, as the process left it.
Result<ScopedFd> make_removed_dir(const schema::DeletedFile& d) {
  std::string what = fmt::format("restore the deleted directory {}", d.path);
  std::filesystem::path dir = std::filesystem::path(d.path).parent_path();
  CKPT_TRY_ASSIGN(auto made, make_missing_parents(dir, what));
  auto unmake = [&] {
    for (auto m = made.rbegin(); m != made.rend(); ++m) ::rmdir(m->c_str());
  };
  for (const std::string& name : {d.path, unique_name(dir, d.id)}) {
    if (::mkdir(name.c_str(), 0700) < 0) {
      if (errno == EEXIST) continue;
      Error e = sys_error(fmt::format("{}: mkdir {}", what, name));
      unmake();
      return e;
    }
    ScopedFd fd(::open(name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    int err = errno;
    ::rmdir(name.c_str());
    unmake();
    if (!fd) return sys_error(err, fmt::format("{}: open {}", what, name));
    return fd;
  }
  unmake();
  return errorf("{}: every name is taken", what);
}

Result<ScopedFd> recreate_one(const image::Store& store, const image::GenerationInfo& gen,
                              const schema::DeletedFile& d) {
  std::string what = fmt::format("restore the deleted file {}", d.path);
  if (d.directory) {
    CKPT_TRY_ASSIGN(ScopedFd fd, make_removed_dir(d));
    Status st = set_owner_and_mode(d, fd.get());
    if (!st.ok()) return st.error().wrap(fmt::format("restore the deleted directory {}", d.path));
    return fd;
  }
  auto fd = make_unlinked(d.path, d.id, 0600);
  if (!fd.ok()) return fd.error().wrap("restore");
  Status st = fill(store, gen, d, fd->get());
  if (!st.ok()) return st.error().wrap(what);
  auto named = name_then_unlink(std::move(*fd), d.path, d.id);
  if (named.ok()) st = set_owner_and_mode(d, named->get());
  if (!named.ok() || !st.ok()) return (named.ok() ? st.error() : named.error()).wrap(what);
  return std::move(*named);
}

Result<ScopedFd> read_only(const ScopedFd& fd, const std::string& path) {
  std::string self = fmt::format("/proc/self/fd/{}", fd.get());
  ScopedFd ro(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ro) return sys_error(fmt::format("restore the deleted executable {}: reopen it", path));
  return ro;
}

}  // namespace

Result<std::map<int32_t, ScopedFd>> recreate(const image::Store& store,
                                             const image::GenerationInfo& gen,
                                             const std::vector<schema::DeletedFile>& files,
                                             const std::set<int32_t>& executables) {
  std::map<int32_t, ScopedFd> out;
  for (auto& d : files) {
    CKPT_TRY_ASSIGN(out[d.id], recreate_one(store, gen, d));
    if (executables.count(d.id)) {
      CKPT_TRY_ASSIGN(out[d.id], read_only(out[d.id], d.path));
    }
  }
  return out;
}

}  // namespace ckpt::deleted_files
