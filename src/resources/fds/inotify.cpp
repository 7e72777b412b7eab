// inotify: every watch (its number, event mask and the path of the watched inode). Watches are
// numbered by the instance in rising order and the process knows them by number, so the restore
// adds them in order of their numbers and skips the numbers between (adding and removing a
// watch), then drops the IN_IGNORED events those removals queued. Events already queued at the
// dump cannot be queued again: the dump refuses an instance that has any.
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/fsnotify_marks.hpp"

namespace ckpt::fds {
namespace {

struct InotifyWatch {
  int32_t wd = 0;
  uint32_t mask = 0;
  std::string path;
  uint64_t ino = 0;
  bool symlink = false;
  template <class V>
  void visit(V& v) {
    v("wd", wd), v("mask", mask), v("path", path), v("ino", ino), v("symlink", symlink);
  }
};

struct InotifyPayload {
  std::vector<InotifyWatch> watches;  // by rising wd
  template <class V>
  void visit(V& v) {
    v("watches", watches);
  }
};

Result<InotifyWatch> read_watch(const FdProbe& p, const std::vector<proc::Mount>& mounts,
                                std::string_view line) {
  MarkFields f = mark_fields(line);
  InotifyWatch w;
  CKPT_TRY_ASSIGN(uint64_t wd, hex_field(f, "wd", line));
  CKPT_TRY_ASSIGN(uint64_t mask, hex_field(f, "mask", line));
  w.wd = static_cast<int32_t>(wd);
  w.mask = static_cast<uint32_t>(mask);
  CKPT_TRY_ASSIGN(WatchedPath where,
                  watched_path(p.pid, mounts, f, line,
                               fmt::format("pid {}: inotify fd {} watch {}", p.pid, p.fd, wd)));
  w.path = std::move(where.path);
  w.ino = where.ino;
  w.symlink = where.symlink;
  return w;
}

// Adds `w` so that it gets its number back: the instance hands out rising numbers, so each
// lower number it offers is taken and given back.
Status add_watch(int fd, const InotifyWatch& w) {
  uint32_t mask = w.mask | (w.symlink ? IN_DONT_FOLLOW : 0);
  for (;;) {
    int wd = ::inotify_add_watch(fd, w.path.c_str(), mask);
    if (wd < 0) return sys_error(fmt::format("inotify_add_watch {} for watch {}", w.path, w.wd));
    if (wd == w.wd) return {};
    if (wd > w.wd)
      return errorf("inotify watch {} on {} came back as watch {}: a lower number was taken", w.wd,
                    w.path, wd);
    if (::inotify_rm_watch(fd, wd) < 0)
      return sys_error(fmt::format("inotify_rm_watch {} (skipping to watch {})", wd, w.wd));
  }
}

void drop_queued_events(int fd) {
  alignas(inotify_event) char buf[64 * 1024];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

class InotifyKind final : public FdKind {
 public:
  std::string_view name() const override { return "inotify"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:inotify";
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int fd, p.borrowed());
    std::string what = fmt::format("pid {}: inotify fd {}", p.pid, p.fd);
    CKPT_TRY(check_no_queued_events(fd, what));
    CKPT_TRY_ASSIGN(auto mounts, proc::read_mountinfo(p.pid));
    InotifyPayload payload;
    for (const auto& line : p.info.inotify_lines) {
      CKPT_TRY_ASSIGN(InotifyWatch w, read_watch(p, mounts, line));
      payload.watches.push_back(std::move(w));
    }
    std::ranges::sort(payload.watches, {}, &InotifyWatch::wd);
    of.payload = schema::encode(payload);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(InotifyPayload payload, payload_of<InotifyPayload>(*of));
      ScopedFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (!fd) return sys_error(fmt::format("inotify_init1 for open file {}", of->id));
      for (const auto& w : payload.watches) {
        std::string what = fmt::format("{}: inotify watch {}", env.holder(of->id), w.wd);
        CKPT_TRY(check_watched({w.path, w.ino, w.symlink}, env.accept_changed_files, what));
        auto added = add_watch(fd.get(), w);
        if (!added) return std::move(added).error().wrap(env.holder(of->id));
      }
      drop_queued_events(fd.get());
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "inotify"));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& inotify_kind() {
  static const InotifyKind kind;
  return kind;
}

}  // namespace ckpt::fds
