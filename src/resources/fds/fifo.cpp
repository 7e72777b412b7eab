// Named pipes. A FIFO keeps its data only while one of its ends is open: at restore a helper end,
// open for reading and writing, holds the saved data (and keeps the opens of the real ends from
// blocking) until every open file of that FIFO exists.
#include <fcntl.h>
#include <sys/stat.h>

#include <map>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

struct FifoPayload {
  std::optional<schema::Bytes> data;  // what it held, saved with its first open file
  template <class V>
  void visit(V& v) {
    v("data", data);
  }
};

class FifoKind final : public FdKind {
 public:
  std::string_view name() const override { return "fifo"; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return S_ISFIFO(p.st.st_mode); }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    FifoPayload f;
    bool saved = false;
    for (auto& other : env.image.open_files) saved |= other.kind == name() && other.path == of.path;
    if (!saved) {
      // A new read end of the same FIFO, so that a write-only fd's data is seen too.
      CKPT_TRY_ASSIGN(ScopedFd reader, open_path(fmt::format("/proc/{}/fd/{}", p.pid, p.fd),
                                                 O_RDONLY | O_NONBLOCK, of.path));
      CKPT_TRY_ASSIGN(f.data, peek_pipe(reader.get(), of.path));
    }
    of.payload = schema::encode(f);
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    std::map<std::string, ScopedFd> helpers;
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(FifoPayload f, payload_of<FifoPayload>(*of));
      auto& helper = helpers[of->path];
      if (!helper) {
        CKPT_TRY_ASSIGN(helper, open_path(of->path, O_RDWR | O_NONBLOCK, of->path));
      }
      if (f.data) CKPT_TRY(refill(helper.get(), *f.data, "FIFO " + of->path));
    }
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(ScopedFd fd, open_path(of->path, of->flags | O_NONBLOCK, of->path));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, of->path));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& fifo_kind() {
  static const FifoKind kind;
  return kind;
}

}  // namespace ckpt::fds
