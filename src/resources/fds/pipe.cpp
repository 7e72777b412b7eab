// Pipes. Each open file (a read or write end, with its own flags) refers to a pipe by inode; the
// pipe's buffered data and size are saved once, with its first open file. At restore the pipe is
// made once and every open file of it is a new open of one of its ends (/proc/self/fd/N), so
// two ends that had different flags get them back. A pipe whose other end was held outside the
// dumped processes comes back with that end closed (as CRIU does), unless the caller hands one
// in with --inherit-fd.
#include <fcntl.h>
#include <sys/ioctl.h>

#include <map>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

struct PipePayload {
  uint64_t ino = 0;
  std::optional<schema::Bytes> data;  // with the first open file of the pipe
  std::optional<int32_t> size;        // F_GETPIPE_SZ, likewise
  template <class V>
  void visit(V& v) {
    v("ino", ino), v("data", data), v("size", size);
  }
};

bool reads(const schema::OpenFile& of) {
  return (of.flags & O_ACCMODE) == O_RDONLY;
}

// The bytes in the pipe, peeked (tee) through a read end: the borrowed copy when `p` is one, else
// a new read end opened through /proc/PID/fd/N. That open needs permission on the pipe, which an
// unprivileged dumper lacks for a pipe another user made (a root shell's, a supervisor's): an
// empty pipe then needs no reader.
Result<schema::Bytes> data_of(FdProbe& p, int copy) {
  if ((p.info.flags & O_ACCMODE) == O_RDONLY) return peek_pipe(copy, p.link);
  auto reader =
      open_path(fmt::format("/proc/{}/fd/{}", p.pid, p.fd), O_RDONLY | O_NONBLOCK, p.link);
  if (reader.ok()) return peek_pipe(reader->get(), p.link);
  int queued = 0;
  if (::ioctl(copy, FIONREAD, &queued) == 0 && queued == 0) return schema::Bytes{};
  return reader.error().wrap(
      fmt::format("pid {}: fd {} (the write end of a pipe holding {} bytes)", p.pid, p.fd, queued));
}

class PipeKind final : public FdKind {
 public:
  std::string_view name() const override { return "pipe"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link.starts_with("pipe:") && S_ISFIFO(p.st.st_mode);
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    PipePayload pipe{static_cast<uint64_t>(p.st.st_ino), {}, {}};
    bool saved = false;
    for (auto& other : env.image.open_files) saved |= other.kind == name() && other.path == p.link;
    if (!saved) {
      CKPT_TRY_ASSIGN(int copy, p.borrowed());
      CKPT_TRY_ASSIGN(pipe.data, data_of(p, copy));
      pipe.size = ::fcntl(copy, F_GETPIPE_SZ);
    }
    of.payload = schema::encode(pipe);
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    std::map<uint64_t, std::vector<std::pair<const schema::OpenFile*, PipePayload>>> pipes;
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(PipePayload p, payload_of<PipePayload>(*of));
      pipes[p.ino].emplace_back(of, std::move(p));
    }
    for (auto& [ino, ends] : pipes) CKPT_TRY(make_pipe(ends, out));
    return {};
  }

 private:
  static Status make_pipe(const std::vector<std::pair<const schema::OpenFile*, PipePayload>>& ends,
                          OpenedFiles& out) {
    std::string what = ends.front().first->path;
    int p[2];
    // Non-blocking: a refill that does not fit fails instead of waiting forever.
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return sys_error(fmt::format("pipe2 for {}", what));
    ScopedFd r(p[0]), w(p[1]);
    int keep_r = p[0], keep_w = p[1];  // stay open in `out` or until this returns
    for (auto& [of, pipe] : ends) {
      if (pipe.size && *pipe.size > 0) (void)::fcntl(w.get(), F_SETPIPE_SZ, *pipe.size);
      if (pipe.data) CKPT_TRY(refill(w.get(), *pipe.data, what));
    }
    // pipe() made one open file per end; any other was an open of /proc/PID/fd/N, which the
    // kernel marks O_LARGEFILE (F_GETFL shows it). Each saved open file gets the original end
    // if it had pipe()'s flags, else a new open of it made while both originals exist.
    for (auto& [of, pipe] : ends) {
      ScopedFd& original = reads(*of) ? r : w;
      if (!(of->flags & O_LARGEFILE) && original) {
        CKPT_TRY(set_status_flags(original.get(), of->flags, what));
        out[of->id] = std::move(original);
        continue;
      }
      CKPT_TRY_ASSIGN(out[of->id], reopen(reads(*of) ? keep_r : keep_w, of->flags, what));
    }
    return {};
  }
};

}  // namespace

const FdKind& pipe_kind() {
  static const PipeKind kind;
  return kind;
}

}  // namespace ckpt::fds
