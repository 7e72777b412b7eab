// Named pipes. A FIFO keeps its data only while one of its ends is open: at restore a helper end,
// open for reading and writing, holds the saved data (and keeps the opens of the real ends from
// blocking) until every open file of that FIFO exists. A FIFO deleted while open is made again
// under its old name (or a unique one in its directory if that is taken), opened, then unlinked,
// so that /proc/PID/fd/N reads "<path> (deleted)" again.
#include <fcntl.h>
#include <sys/stat.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

constexpr std::string_view kDeleted = " (deleted)";

struct FifoPayload {
  std::optional<schema::Bytes> data;  // what it held, saved with its first open file
  bool deleted = false;               // unlinked while open: no path to open it by
  uint64_t ino = 0;                   // tells deleted FIFOs of one name apart
  uint32_t mode = 0600;
  template <class V>
  void visit(V& v) {
    v("data", data);
    v.opt("deleted", deleted), v.opt("ino", ino), v.opt("mode", mode);
  }
};

// The FIFOs of an image: one per path, or per inode for deleted ones.
std::string fifo_key(const schema::OpenFile& of, const FifoPayload& f) {
  return f.deleted ? fmt::format("{}#{}", of.path, f.ino) : of.path;
}

bool data_saved(const std::vector<schema::OpenFile>& files, std::string_view kind,
                const schema::OpenFile& of, const FifoPayload& mine) {
  for (auto& other : files) {
    if (other.kind != kind || other.path != of.path) continue;
    auto f = payload_of<FifoPayload>(other);
    if (f.ok() && fifo_key(other, *f) == fifo_key(of, mine)) return true;
  }
  return false;
}

// A FIFO in place of a deleted one, at its path if free; the name to open it by until
// unlink_fifo().
Result<std::string> make_fifo(const std::string& path, uint32_t mode) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::random_device rd;
  for (const std::string& name :
       {path, (dir / fmt::format(".ckpt-fifo-{}-{:08x}", ::getpid(), rd())).string()}) {
    if (::mkfifo(name.c_str(), mode & 07777) == 0) return name;
    if (errno != EEXIST) return sys_error(fmt::format("mkfifo {} for the deleted FIFO", name));
  }
  return errorf("create the deleted FIFO {}: every name is taken", path);
}

class FifoKind final : public FdKind {
 public:
  std::string_view name() const override { return "fifo"; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return S_ISFIFO(p.st.st_mode); }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    FifoPayload f;
    if (of.path.ends_with(kDeleted)) {
      of.path.resize(of.path.size() - kDeleted.size());
      f.deleted = true;
      f.ino = p.st.st_ino;
      f.mode = p.st.st_mode & 07777;
    }
    if (!data_saved(env.image.open_files, name(), of, f)) {
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
    std::map<std::string, std::vector<std::pair<const schema::OpenFile*, FifoPayload>>> fifos;
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(FifoPayload f, payload_of<FifoPayload>(*of));
      fifos[fifo_key(*of, f)].emplace_back(of, std::move(f));
    }
    for (auto& [key, files] : fifos) CKPT_TRY(open_fifo(files, out));
    return {};
  }

 private:
  // One FIFO: a deleted one is made again and unlinked once its open files exist, before the
  // next deleted FIFO of the same name is made.
  static Status open_fifo(const std::vector<std::pair<const schema::OpenFile*, FifoPayload>>& files,
                          OpenedFiles& out) {
    const std::string& path = files.front().first->path;
    std::string name = path;
    bool deleted = files.front().second.deleted;
    if (deleted) {
      CKPT_TRY_ASSIGN(name, make_fifo(path, files.front().second.mode));
    }
    Status st = open_ends(name, files, out);
    if (deleted && ::unlink(name.c_str()) < 0 && st.ok())
      st = sys_error(fmt::format("unlink {}", name));
    return st;
  }

  static Status open_ends(const std::string& name,
                          const std::vector<std::pair<const schema::OpenFile*, FifoPayload>>& files,
                          OpenedFiles& out) {
    const std::string& path = files.front().first->path;
    CKPT_TRY_ASSIGN(ScopedFd helper, open_path(name, O_RDWR | O_NONBLOCK, path));
    for (auto& [of, f] : files)
      if (f.data) CKPT_TRY(refill(helper.get(), *f.data, "FIFO " + path));
    for (auto& [of, f] : files) {
      CKPT_TRY_ASSIGN(ScopedFd fd, open_path(name, of->flags | O_NONBLOCK, path));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, path));
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
