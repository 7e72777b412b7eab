// Regular files and directories, opened again by path with their flags and offset. A file that
// changed size since the dump is refused at restore (unless the caller accepts changed files, or
// the process only appends to it): the process's idea of it would no longer hold.
#include <fcntl.h>
#include <sys/stat.h>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

struct FilePayload {
  uint64_t size = 0;
  bool directory = false;
  template <class V>
  void visit(V& v) {
    v("size", size), v("directory", directory);
  }
};

class FileKind final : public FdKind {
 public:
  std::string_view name() const override { return "file"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return S_ISREG(p.st.st_mode) || S_ISDIR(p.st.st_mode);
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    // A namespace (`net:[4026531840]`, from /proc/PID/ns or setns) stats as a regular file but
    // has no path to open again.
    if (p.link.empty() || p.link.front() != '/')
      return errorf(
          "pid {}: fd {} is {}, a namespace or other file without a path, which ckpt "
          "cannot save yet",
          p.pid, p.fd, p.link);
    CKPT_TRY(check_path_leads_back(p));
    FilePayload f{static_cast<uint64_t>(p.st.st_size), S_ISDIR(p.st.st_mode)};
    of.payload = schema::encode(f);
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(FilePayload f, payload_of<FilePayload>(*of));
      // A log file others append to may grow: where such a process writes does not depend on
      // the size.
      bool appends = of->flags & O_APPEND;
      if (!f.directory && !appends && !env.accept_changed_files)
        CKPT_TRY(check_size(of->path, f.size));
      CKPT_TRY_ASSIGN(ScopedFd fd, open_path(of->path, of->flags, of->path));
      if (!f.directory) CKPT_TRY(seek_to(fd.get(), of->pos, of->path));
      out[of->id] = std::move(fd);
    }
    return {};
  }

 private:
  // The restore opens the file by its path, which /proc shows as ckpt sees it (a chrooted
  // process's file too): that path must lead to the file the process has open. Not so for a file
  // on a filesystem of the kernel's own (queues of another kind, a hidden mount) or one a mount
  // now covers: the restore would open another file, or none.
  static Status check_path_leads_back(const FdProbe& p) {
    struct stat now {};
    if (::stat(p.link.c_str(), &now) == 0 && now.st_dev == p.st.st_dev && now.st_ino == p.st.st_ino)
      return {};
    return errorf(
        "pid {}: fd {} is {}, but that path leads to another file or none (a mount over it, or a "
        "filesystem without paths), which ckpt cannot save",
        p.pid, p.fd, p.link);
  }
  static Status check_size(const std::string& path, uint64_t size) {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0) return sys_error(fmt::format("file {}", path));
    if (static_cast<uint64_t>(st.st_size) != size)
      return errorf("file {} changed size since the dump ({} bytes, was {})", path, st.st_size,
                    size);
    return {};
  }
};

}  // namespace

const FdKind& file_kind() {
  static const FileKind kind;
  return kind;
}

}  // namespace ckpt::fds
