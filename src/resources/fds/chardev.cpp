// Character devices other than terminals. Only those without state of their own (/dev/null,
// /dev/zero, /dev/full, /dev/random, /dev/urandom) are saved, and opened again by path: any other
// device (/dev/net/tun, /dev/fuse, /dev/kmsg, ...) would come back as a new,
// unrelated instance of itself, so it is refused, naming it.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <array>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

// Major 1 (memory devices), minors of the stateless ones.
constexpr unsigned kMemMajor = 1;
constexpr std::array<unsigned, 5> kStatelessMinors = {3, 5, 7, 8,
                                                      9};  // null zero full random urandom

bool stateless(dev_t rdev) {
  if (major(rdev) != kMemMajor) return false;
  for (unsigned m : kStatelessMinors)
    if (minor(rdev) == m) return true;
  return false;
}

class ChardevKind final : public FdKind {
 public:
  std::string_view name() const override { return "chardev"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return S_ISCHR(p.st.st_mode) && !is_tty_path(p.link);
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile&) const override {
    if (stateless(p.st.st_rdev)) return {};
    return errorf(
        "pid {}: fd {} is the character device {} ({}:{}), whose state ckpt cannot save (it "
        "would come back as a new instance)",
        p.pid, p.fd, p.link, major(p.st.st_rdev), minor(p.st.st_rdev));
  }
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
