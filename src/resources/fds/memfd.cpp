// memfd (memfd_create): its contents, size, name and seals are the shared memory object's
// (shared_memory.hpp), saved once for every descriptor and shared mapping of it, so that a
// program that writes through its fd sees the write in its mapping after the restore as before.
// Each open file is opened again from the recreated memfd with its flags and offset. Refused: a
// memfd of huge pages (MFD_HUGETLB), and one sealed against future writes (shared_memory.cpp).
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"
#include "resources/shared_memory.hpp"

namespace ckpt::fds {
namespace {

constexpr std::string_view kPrefix = "/memfd:";
constexpr std::string_view kSuffix = " (deleted)";

struct MemfdPayload {
  int32_t shm = 0;  // schema::ShmObject::id
  template <class V>
  void visit(V& v) {
    v("shm", shm);
  }
};

class MemfdKind final : public FdKind {
 public:
  std::string_view name() const override { return "memfd"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link.starts_with(kPrefix) && p.link.ends_with(kSuffix) && S_ISREG(p.st.st_mode);
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    CKPT_TRY_ASSIGN(int fd, p.borrowed());
    struct statfs fs {};
    if (::fstatfs(fd, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC)
      return errorf("pid {}: fd {} is the memfd {} of huge pages, which ckpt cannot save yet",
                    p.pid, p.fd, p.link.substr(1));
    of.path = p.link.substr(0, p.link.size() - kSuffix.size());
    CKPT_TRY_ASSIGN(int32_t id, shared_memory::save_memfd(env.ctx, p.pid, p.fd, p.link, p.st));
    of.payload = schema::encode(MemfdPayload{id});
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(MemfdPayload m, payload_of<MemfdPayload>(*of));
      auto object = env.shm_objects.find(m.shm);
      if (object == env.shm_objects.end())
        return errorf("open file {}: memfd {} is not in the image", of->id, m.shm);
      std::string what = fmt::format("the memfd {}", of->path.substr(1));
      CKPT_TRY_ASSIGN(ScopedFd fd, reopen(object->second, of->flags, what));
      CKPT_TRY(seek_to(fd.get(), of->pos, what));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& memfd_kind() {
  static const MemfdKind kind;
  return kind;
}

}  // namespace ckpt::fds
