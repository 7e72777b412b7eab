// Character devices other than terminals (/dev/null, /dev/urandom, ...): opened again by path.
#include <sys/stat.h>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

class ChardevKind final : public FdKind {
 public:
  std::string_view name() const override { return "chardev"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return S_ISCHR(p.st.st_mode) && !is_tty_path(p.link);
  }
  Status dump(DumpEnv&, FdProbe&, schema::OpenFile&) const override { return {}; }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(out[of->id], open_path(of->path, of->flags, of->path));
    }
    return {};
  }
};

}  // namespace

const FdKind& chardev_kind() {
  static const ChardevKind kind;
  return kind;
}

}  // namespace ckpt::fds
