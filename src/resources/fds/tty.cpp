// Terminals that are not the caller's: refused for now, with the way out (--shell-job gives the
// restored process the terminal of whoever restores it).
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

class TtyKind final : public FdKind {
 public:
  std::string_view name() const override { return "tty"; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return is_tty_path(p.link); }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile&) const override {
    return errorf(
        "pid {}: fd {} is the terminal {}; dump with --shell-job to let restore give it the "
        "terminal of its caller",
        p.pid, p.fd, p.link);
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles&) const override {
    if (mine.empty()) return {};
    return errorf("open file {}: terminals are not restored yet", mine.front()->id);
  }
};

}  // namespace

const FdKind& tty_kind() {
  static const TtyKind kind;
  return kind;
}

}  // namespace ckpt::fds
