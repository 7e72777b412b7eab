#include "resources/locks.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "resources/files.hpp"

namespace ckpt::locks {
namespace {

namespace fs = std::filesystem;
using schema::LockKind;
using schema::LockRecord;

std::optional<LockKind> kind_of(std::string_view k) {
  if (k == "POSIX") return LockKind::posix;
  if (k == "FLOCK") return LockKind::flock;
  if (k == "OFDLCK") return LockKind::ofd;
  if (k == "LEASE") return LockKind::lease;
  return std::nullopt;
}

std::string range_text(const LockRecord& r) {
  return r.end ? fmt::format("bytes {}-{}", r.start, *r.end) : fmt::format("bytes {}-EOF", r.start);
}

// The open file a descriptor of the process refers to.
std::optional<uint32_t> open_file_of_fd(const schema::ProcessRecord& rec, int fd) {
  for (auto& f : rec.fds)
    if (f.fd == fd) return f.open_file;
  return std::nullopt;
}

// A POSIX lock shows on every descriptor of its open file (dup): kept once.
void add_posix(schema::ProcessRecord& rec, const LockRecord& r, uint32_t open_file) {
  for (auto& e : rec.locks) {
    if (open_file_of_fd(rec, e.fd.value_or(-1)) != open_file) continue;
    LockRecord same = e;
    same.fd = r.fd;
    if (same == r) return;
  }
  rec.locks.push_back(r);
}

bool on_inode(const proc::FileLock& l, const struct stat& st) {
  return !l.blocked && l.inode == st.st_ino && l.dev_major && *l.dev_major == major(st.st_dev) &&
         *l.dev_minor == minor(st.st_dev);
}

// "pid P: fd N", a process outside `mine` whose fd holds an OFD lock on inode `st` (/proc/locks
// does not say whose an OFD lock is; the holder's fdinfo does). Scans every process: asked only
// when a restore is refused.
std::string ofd_holder(const struct stat& st, const std::set<pid_t>& mine) {
  std::error_code ec;
  for (auto& dir : fs::directory_iterator("/proc", ec)) {
    std::string name = dir.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = static_cast<pid_t>(std::strtol(name.c_str(), nullptr, 10));
    if (mine.count(pid)) continue;
    std::error_code fd_ec;
    for (auto& fd : fs::directory_iterator(dir.path() / "fdinfo", fd_ec)) {
      int n = std::atoi(fd.path().filename().c_str());
      auto info = proc::read_fdinfo(pid, n);
      if (!info.ok()) continue;
      for (auto& line : info->lock_lines) {
        auto l = proc::parse_lock_line(line);
        if (l.ok() && l->kind == "OFDLCK" && on_inode(*l, st))
          return fmt::format("pid {}: fd {}", pid, n);
      }
    }
  }
  return "an open file of another process";
}

// Who holds a lock on the inode `st` now, as /proc/locks says, leaving out the restored
// processes and the restorer: for a refusal at restore.
std::string holders_of(const struct stat& st, std::set<pid_t> mine) {
  mine.insert(::getpid());
  auto all = proc::read_locks();
  if (!all.ok()) return "another process";
  std::vector<std::string> out;
  for (auto& l : *all) {
    if (!on_inode(l, st) || mine.count(l.pid)) continue;
    std::string end = l.end ? std::to_string(*l.end) : "EOF";
    std::string who = l.pid > 0 ? fmt::format("pid {}", l.pid) : ofd_holder(st, mine);
    out.push_back(fmt::format("{} ({} {} {}-{})", who, l.kind, l.access, l.start, end));
  }
  if (out.empty()) return "another process";
  std::string text = out[0];
  for (size_t i = 1; i < out.size(); ++i) text += ", " + out[i];
  return text;
}

// "pid P", a process outside `mine` with inode `st` open: what keeps a lease from being taken.
std::string opener_of(const struct stat& st, std::set<pid_t> mine) {
  mine.insert(::getpid());
  std::error_code ec;
  for (auto& dir : fs::directory_iterator("/proc", ec)) {
    std::string name = dir.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = static_cast<pid_t>(std::strtol(name.c_str(), nullptr, 10));
    if (mine.count(pid)) continue;
    std::error_code fd_ec;
    for (auto& fd : fs::directory_iterator(dir.path() / "fd", fd_ec)) {
      struct stat other {};
      if (::stat(fd.path().c_str(), &other) == 0 && other.st_dev == st.st_dev &&
          other.st_ino == st.st_ino)
        return fmt::format("pid {}", pid);
    }
  }
  return "another process";
}

std::set<pid_t> image_pids(const schema::ImageRoot& image) {
  std::set<pid_t> out;
  for (auto& p : image.processes) out.insert(p.pid);
  return out;
}

Error taken_since(const std::string& where, const LockRecord& r, const struct stat& st,
                  const schema::ImageRoot& image) {
  return errorf("{}: cannot take its {} again: held since the dump by {}", where, describe(r),
                holders_of(st, image_pids(image)));
}

struct flock as_flock(const LockRecord& r) {
  struct flock fl {};
  fl.l_type = r.write ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(r.start);
  fl.l_len = r.end ? static_cast<off_t>(*r.end - r.start + 1) : 0;
  return fl;
}

// "pid P: fd N (PATH)", the first descriptor of an open file, for messages.
std::string first_holder(const schema::ImageRoot& image, const schema::OpenFile& of) {
  for (auto& p : image.processes)
    for (auto& f : p.fds)
      if (f.open_file == of.id) return fmt::format("pid {}: fd {} ({})", p.pid, f.fd, of.path);
  return fmt::format("open file {} ({})", of.id, of.path);
}

Status take_in_restorer(const schema::ImageRoot& image, int fd, const LockRecord& r,
                        const std::string& where) {
  int rc = 0;
  if (r.kind == LockKind::flock) {
    rc = ::flock(fd, (r.write ? LOCK_EX : LOCK_SH) | LOCK_NB);
  } else {
    struct flock fl = as_flock(r);
    rc = ::fcntl(fd, F_OFD_SETLK, &fl);
  }
  if (rc == 0) return {};
  int err = errno;
  struct stat st {};
  if ((err == EAGAIN || err == EWOULDBLOCK || err == EACCES) && ::fstat(fd, &st) == 0)
    return taken_since(where, r, st, image);
  return sys_error(err, fmt::format("{}: taking its {} again", where, describe(r)));
}

// The first process of the image (in creation order) holding open file `id`: the one that takes
// its lease again, as the first holder is the one most likely to have taken it (a child that
// inherited the open file shares the lease all the same).
bool first_to_hold(const schema::ImageRoot& image, pid_t pid, uint32_t id) {
  for (auto& p : image.processes)
    for (auto& f : p.fds)
      if (f.open_file == id) return p.pid == pid;
  return false;
}

// fcntl(fd, cmd, arg) in the puppet, the argument (if any) copied into its scratch memory.
Result<long> remote_fcntl(RestoreContext& ctx, int fd, int cmd, const void* arg, size_t len,
                          uint64_t value = 0) {
  if (arg) {
    if (ctx.scratch.size < len) return errorf("restore pid {}: scratch too small", ctx.pid);
    CKPT_TRY(write_remote(ctx.pid, ctx.scratch.addr, arg, len));
    value = ctx.scratch.addr;
  }
  return ctx.main_remote->call_raw(SYS_fcntl, {uint64_t(fd), uint64_t(cmd), value});
}

Error remote_failure(RestoreContext& ctx, int fd, const LockRecord& r, long ret,
                     const std::string& path) {
  std::string where = fmt::format("pid {}: fd {} ({})", ctx.pid, fd, path);
  struct stat st {};
  std::string link = fmt::format("/proc/{}/fd/{}", ctx.pid, fd);
  bool busy = ret == -EAGAIN || ret == -EACCES || ret == -EWOULDBLOCK;
  if (busy && ::stat(link.c_str(), &st) == 0) {
    if (r.kind != LockKind::lease) return taken_since(where, r, st, *ctx.image);
    return errorf("{}: cannot take its {} again: the file is open in {} since the dump", where,
                  describe(r), opener_of(st, image_pids(*ctx.image)));
  }
  return sys_error(static_cast<int>(-ret),
                   fmt::format("{}: taking its {} again", where, describe(r)));
}

Status take_posix(RestoreContext& ctx, const LockRecord& r) {
  const schema::ProcessRecord& rec = *ctx.rec;
  auto id = r.fd ? open_file_of_fd(rec, *r.fd) : std::nullopt;
  if (r.kind != LockKind::posix || !id)
    return errorf("restore pid {}: the image holds a {} on fd {}, which the process has not",
                  ctx.pid, describe(r), r.fd.value_or(-1));
  struct flock fl = as_flock(r);
  CKPT_TRY_ASSIGN(long ret, remote_fcntl(ctx, *r.fd, F_SETLK, &fl, sizeof fl));
  if (ret < 0) return remote_failure(ctx, *r.fd, r, ret, ctx.image->open_files.at(*id).path);
  return {};
}

// F_SETLEASE makes the caller the open file's owner (who gets the break signal); an owner the
// image names otherwise is put back after it.
Status take_lease(RestoreContext& ctx, int fd, const schema::OpenFile& of, const LockRecord& r) {
  long type = r.write ? F_WRLCK : F_RDLCK;
  CKPT_TRY_ASSIGN(long ret, remote_fcntl(ctx, fd, F_SETLEASE, nullptr, 0, uint64_t(type)));
  if (ret < 0) return remote_failure(ctx, fd, r, ret, of.path);
  if (!of.owner || of.owner->pid == 0) return {};
  f_owner_ex owner{static_cast<__pid_type>(of.owner->type), of.owner->pid};
  CKPT_TRY_ASSIGN(ret, remote_fcntl(ctx, fd, F_SETOWN_EX, &owner, sizeof owner));
  if (ret < 0)
    return sys_error(static_cast<int>(-ret),
                     fmt::format("pid {}: fd {}: fcntl(F_SETOWN_EX, {}) after its lease", ctx.pid,
                                 fd, owner.pid));
  return {};
}

}  // namespace

Result<LockRecord> record_of(const proc::FileLock& l, bool read_only) {
  auto kind = kind_of(l.kind);
  if (!kind) return errorf("holds a {} lock, which ckpt cannot save", l.kind);
  if (l.blocked) return errorf("waits for a {} lock, which is no lock to save", l.kind);
  LockRecord r;
  r.kind = *kind;
  bool lease = *kind == LockKind::lease;
  if (!lease && l.mode != "ADVISORY")
    return errorf("holds a {} {} lock, which ckpt cannot save", l.mode, l.kind);
  if (lease && l.mode != "ACTIVE" && l.mode != "BREAKING")
    return errorf("holds a lease in state {}, which ckpt cannot save", l.mode);
  r.breaking = lease && l.mode == "BREAKING";
  if (l.access != "READ" && l.access != "WRITE" && !(r.breaking && l.access == "UNLCK"))
    return errorf("holds a {} lock of type {}, which ckpt cannot save", l.kind, l.access);
  // A breaking lease shows what it is being broken to: READ means it was a write lease; UNLCK
  // hides which it was, and the file's access mode is the best guess (a read lease cannot be
  // held through a file open for writing).
  r.write = l.access == "WRITE" || (r.breaking && (l.access == "READ" || !read_only));
  if (*kind == LockKind::posix || *kind == LockKind::ofd) {
    r.start = l.start;
    r.end = l.end;
  }
  return r;
}

std::string describe(const LockRecord& r) {
  const char* type = r.write ? "write" : "read";
  switch (r.kind) {
    case LockKind::posix:
      return fmt::format("POSIX {} lock on {}", type, range_text(r));
    case LockKind::ofd:
      return fmt::format("OFD {} lock on {}", type, range_text(r));
    case LockKind::flock:
      return fmt::format("flock {} lock", r.write ? "exclusive" : "shared");
    case LockKind::lease:
      return fmt::format("{} lease", type);
  }
  return "lock";
}

Status dump_fd(DumpContext& ctx, const fds::FdProbe& p, uint32_t open_file) {
  if (p.info.lock_lines.empty()) return {};
  schema::OpenFile& of = ctx.tree->image.open_files.at(open_file);
  std::string where = fmt::format("pid {}: fd {}", p.pid, p.fd);
  for (auto& line : p.info.lock_lines) {
    auto l = proc::parse_lock_line(line);
    if (!l) return l.error().wrap(where + ": fdinfo lock line");
    if (l->blocked) continue;
    auto r = record_of(*l, (of.flags & O_ACCMODE) == O_RDONLY);
    if (!r) return r.error().wrap(fmt::format("{} ({})", where, p.link));
    // Only files opened again by path (or recreated) are the same file to the lock's rivals.
    if (of.kind != "file" && of.kind != "deleted")
      return errorf("{} holds a {} on {} (a {}), which ckpt cannot save yet", where, describe(*r),
                    p.link, of.kind);
    if (r->kind == LockKind::posix) {
      r->fd = p.fd;
      add_posix(ctx.rec, *r, open_file);
    } else if (std::find(of.locks.begin(), of.locks.end(), *r) == of.locks.end()) {
      of.locks.push_back(*r);
    }
  }
  return {};
}

Status check_deleted_files(const TreeState& tree,
                           const std::function<pid_t(const std::string&)>& outside_holder) {
  std::vector<proc::FileLock> all;
  for (auto& [key, id] : tree.open_files_by_inode) {
    const schema::OpenFile& of = tree.image.open_files.at(id);
    if (of.kind != "deleted") continue;
    if (all.empty()) {
      CKPT_TRY_ASSIGN(all, proc::read_locks());
      if (all.empty()) return {};
    }
    struct stat st {};
    st.st_dev = static_cast<dev_t>(key.first);
    st.st_ino = static_cast<ino_t>(key.second);
    bool locked = std::any_of(all.begin(), all.end(), [&](const proc::FileLock& l) {
      proc::FileLock held = l;
      held.blocked = false;  // a waiter counts too
      return on_inode(held, st);
    });
    if (!locked) continue;
    // The deleted kind keeps the name without the " (deleted)" that /proc/PID/fd shows.
    pid_t other =
        outside_holder(of.path.ends_with(" (deleted)") ? of.path : of.path + " (deleted)");
    if (other == 0) continue;
    auto [pid, fd] = tree.holders.at(id).front();
    return errorf(
        "pid {}: fd {} is the deleted file {}, which has file locks and is open in pid {} outside "
        "the dumped processes: a restored copy of it would not share them, which ckpt cannot save",
        pid, fd, of.path, other);
  }
  return {};
}

Status take_open_file_locks(const schema::ImageRoot& image, const HandedFds& handed) {
  for (auto& of : image.open_files) {
    for (auto& r : of.locks) {
      if (r.kind == LockKind::lease) continue;  // taken by its process: take_process_locks
      std::string where = first_holder(image, of);
      if (r.kind == LockKind::posix)
        return errorf("{}: the image holds a POSIX lock on the open file, not on a process", where);
      int fd = handed.find(files::handed_key(of.id));
      if (fd < 0) return errorf("{}: the open file was not recreated", where);
      CKPT_TRY(take_in_restorer(image, fd, r, where));
    }
  }
  return {};
}

Status take_process_locks(RestoreContext& ctx) {
  const schema::ProcessRecord& rec = *ctx.rec;
  for (auto& r : rec.locks) CKPT_TRY(take_posix(ctx, r));
  std::set<uint32_t> done;
  for (auto& f : rec.fds) {
    if (!done.insert(f.open_file).second) continue;
    const schema::OpenFile& of = ctx.image->open_files.at(f.open_file);
    if (!first_to_hold(*ctx.image, rec.pid, of.id)) continue;
    for (auto& r : of.locks)
      if (r.kind == LockKind::lease) CKPT_TRY(take_lease(ctx, f.fd, of, r));
  }
  return {};
}

}  // namespace ckpt::locks
