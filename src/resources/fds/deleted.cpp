// Files deleted while open: the inode's contents are saved once (deleted_files.hpp) and every
// open file of it is opened again, with its flags and offset, from the one recreated inode.
#include <sys/stat.h>
#include <unistd.h>

#include "resources/deleted_files.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

constexpr std::string_view kSuffix = " (deleted)";

struct DeletedPayload {
  int32_t deleted_id = 0;  // schema::DeletedFile::id
  template <class V>
  void visit(V& v) {
    v("deleted_id", deleted_id);
  }
};

class DeletedKind final : public FdKind {
 public:
  std::string_view name() const override { return "deleted"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    // A directory removed has no links left; one merely named so is an ordinary directory.
    return p.link.starts_with("/") && p.link.ends_with(kSuffix) && !S_ISSOCK(p.st.st_mode) &&
           !S_ISCHR(p.st.st_mode) && !S_ISFIFO(p.st.st_mode) &&
           (!S_ISDIR(p.st.st_mode) || p.st.st_nlink == 0);
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    of.path = p.link.substr(0, p.link.size() - kSuffix.size());
    CKPT_TRY_ASSIGN(int32_t id, deleted_files::save(env.ctx, p.fd, of.path, p.st));
    of.payload = schema::encode(DeletedPayload{id});
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(DeletedPayload d, payload_of<DeletedPayload>(*of));
      auto inode = env.deleted_inodes.find(d.deleted_id);
      if (inode == env.deleted_inodes.end())
        return errorf("open file {}: deleted file {} is not in the image", of->id, d.deleted_id);
      std::string what = fmt::format("the deleted file {}", of->path);
      CKPT_TRY_ASSIGN(ScopedFd fd, reopen(inode->second, of->flags, what));
      // A removed directory is empty: its position only tells whether "." and ".." were read,
      // and a file system may refuse an old position in a new directory (then it reads them).
      struct stat st;
      bool dir = ::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode);
      if (dir)
        (void)::lseek(fd.get(), static_cast<off_t>(of->pos), SEEK_SET);
      else
        CKPT_TRY(seek_to(fd.get(), of->pos, what));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& deleted_kind() {
  static const DeletedKind kind;
  return kind;
}

}  // namespace ckpt::fds
