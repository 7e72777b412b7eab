// fanotify: the group's flags and every mark (on an inode, a mount or a whole filesystem, with its
// event mask, ignore mask and mark flags). The marks are made again by path: an inode's current
// path, found from its file handle; a mount's mount point; any mount of the filesystem. Events
// already queued at the dump cannot be queued again: the dump refuses a group that has any. A
// permission event the process has read but not answered is not visible to ckpt: once the
// original is gone the kernel allows that access, and the restored process's answer to it fails.
#include <fcntl.h>
#include <sys/fanotify.h>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/fsnotify_marks.hpp"

#ifndef FAN_MARK_EVICTABLE
#define FAN_MARK_EVICTABLE 0x00000200
#endif
#ifndef FAN_MARK_IGNORE
#define FAN_MARK_IGNORE 0x00000400
#endif

namespace ckpt::fds {
namespace {

struct FanotifyMark {
  std::string on;  // "inode", "mount" or "filesystem"
  std::string path;
  uint64_t ino = 0;  // inode marks
  bool symlink = false;
  uint32_t mark_flags = 0;  // FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE
  uint64_t mask = 0;
  uint64_t ignored_mask = 0;
  template <class V>
  void visit(V& v) {
    v("on", on), v("path", path), v("ino", ino), v("symlink", symlink), v("mark_flags", mark_flags),
        v("mask", mask), v("ignored_mask", ignored_mask);
  }
};

struct FanotifyPayload {
  uint32_t init_flags = 0;   // fanotify_init's flags (the group shows them in fdinfo)
  uint32_t event_flags = 0;  // fanotify_init's event_f_flags
  std::vector<FanotifyMark> marks;
  template <class V>
  void visit(V& v) {
    v("init_flags", init_flags), v("event_flags", event_flags), v("marks", marks);
  }
};

Result<FanotifyMark> read_mark(const FdProbe& p, const std::vector<proc::Mount>& mounts,
                               std::string_view line, std::string_view what) {
  MarkFields f = mark_fields(line);
  FanotifyMark m;
  CKPT_TRY_ASSIGN(uint64_t flags, hex_field(f, "mflags", line));
  CKPT_TRY_ASSIGN(m.mask, hex_field(f, "mask", line));
  CKPT_TRY_ASSIGN(m.ignored_mask, hex_field(f, "ignored_mask", line));
  m.mark_flags = static_cast<uint32_t>(flags);
  if (f.contains("ino")) {
    m.on = "inode";
    CKPT_TRY_ASSIGN(WatchedPath w, watched_path(p.pid, mounts, f, line, what));
    m.path = std::move(w.path);
    m.ino = w.ino;
    m.symlink = w.symlink;
  } else if (f.contains("mnt_id")) {
    m.on = "mount";
    CKPT_TRY_ASSIGN(uint64_t id, hex_field(f, "mnt_id", line));
    CKPT_TRY_ASSIGN(m.path, mount_path(p.pid, mounts, static_cast<int>(id), what));
  } else if (f.contains("sdev")) {
    m.on = "filesystem";
    CKPT_TRY_ASSIGN(uint64_t sdev, hex_field(f, "sdev", line));
    CKPT_TRY_ASSIGN(m.path, filesystem_path(p.pid, mounts, sdev, what));
  } else {
    return errorf("{} is of a kind ckpt cannot save yet (\"{}\")", what, line);
  }
  return m;
}

Result<FanotifyPayload> read_group(const FdProbe& p, const std::string& what) {
  FanotifyPayload g;
  CKPT_TRY_ASSIGN(auto mounts, proc::read_mountinfo(p.pid));
  bool header = false;
  for (const auto& line : p.info.fanotify_lines) {
    MarkFields f = mark_fields(line);
    if (f.contains("event-flags")) {
      CKPT_TRY_ASSIGN(uint64_t flags, hex_field(f, "flags", line));
      CKPT_TRY_ASSIGN(uint64_t event_flags, hex_field(f, "event-flags", line));
      g.init_flags = static_cast<uint32_t>(flags);
      g.event_flags = static_cast<uint32_t>(event_flags);
      header = true;
      continue;
    }
    std::string mark = fmt::format("{} mark {}", what, g.marks.size() + 1);
    CKPT_TRY_ASSIGN(FanotifyMark m, read_mark(p, mounts, line, mark));
    g.marks.push_back(std::move(m));
  }
  if (!header) return errorf("{}: fdinfo shows no fanotify flags", what);
  return g;
}

Status add_mark(int fd, const FanotifyMark& m) {
  unsigned base =
      FAN_MARK_ADD | (m.mark_flags & FAN_MARK_EVICTABLE) | (m.symlink ? FAN_MARK_DONT_FOLLOW : 0);
  if (m.on == "mount") base |= FAN_MARK_MOUNT;
  if (m.on == "filesystem") base |= FAN_MARK_FILESYSTEM;
  if (m.mask != 0 && ::fanotify_mark(fd, base, m.mask, AT_FDCWD, m.path.c_str()) < 0)
    return sys_error(fmt::format("fanotify_mark {} ({} mask {:#x})", m.path, m.on, m.mask));
  if (m.ignored_mask == 0) return {};
  unsigned ignore = (m.mark_flags & FAN_MARK_IGNORE) ? FAN_MARK_IGNORE : FAN_MARK_IGNORED_MASK;
  ignore |= m.mark_flags & FAN_MARK_IGNORED_SURV_MODIFY;
  if (::fanotify_mark(fd, base | ignore, m.ignored_mask, AT_FDCWD, m.path.c_str()) < 0)
    return sys_error(
        fmt::format("fanotify_mark {} ({} ignore mask {:#x})", m.path, m.on, m.ignored_mask));
  return {};
}

class FanotifyKind final : public FdKind {
 public:
  std::string_view name() const override { return "fanotify"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:[fanotify]";
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int fd, p.borrowed());
    std::string what = fmt::format("pid {}: fanotify fd {}", p.pid, p.fd);
    CKPT_TRY(check_no_queued_events(fd, what));
    CKPT_TRY_ASSIGN(FanotifyPayload g, read_group(p, what));
    of.payload = schema::encode(g);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(FanotifyPayload g, payload_of<FanotifyPayload>(*of));
      // The group keeps its FAN_CLOEXEC and FAN_NONBLOCK for fdinfo to show, so they are given
      // as they were; ckpt's own descriptor is made close-on-exec after.
      ScopedFd fd(::fanotify_init(g.init_flags, g.event_flags));
      if (!fd || ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) < 0)
        return sys_error(fmt::format("{}: fanotify_init(flags {:#x}, event flags {:#x})",
                                     env.holder(of->id), g.init_flags, g.event_flags));
      for (size_t i = 0; i < g.marks.size(); ++i) {
        const FanotifyMark& m = g.marks[i];
        std::string what = fmt::format("{}: fanotify mark {}", env.holder(of->id), i + 1);
        if (m.on == "inode")
          CKPT_TRY(check_watched({m.path, m.ino, m.symlink}, env.accept_changed_files, what));
        auto added = add_mark(fd.get(), m);
        if (!added) return std::move(added).error().wrap(what);
      }
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "fanotify"));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& fanotify_kind() {
  static const FanotifyKind kind;
  return kind;
}

}  // namespace ckpt::fds
