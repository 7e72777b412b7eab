// signalfd: the set of signals it reads, from fdinfo.
#include <signal.h>
#include <sys/signalfd.h>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

struct SignalfdPayload {
  uint64_t sigmask = 0;
  template <class V>
  void visit(V& v) {
    v("sigmask", sigmask);
  }
};

class SignalfdKind final : public FdKind {
 public:
  std::string_view name() const override { return "signalfd"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:[signalfd]";
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    of.payload = schema::encode(SignalfdPayload{p.info.sigmask.value_or(0)});
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(SignalfdPayload s, payload_of<SignalfdPayload>(*of));
      sigset_t set;
      sigemptyset(&set);
      for (int sig = 1; sig <= 64; ++sig)
        if (s.sigmask & (uint64_t{1} << (sig - 1))) sigaddset(&set, sig);
      ScopedFd fd(::signalfd(-1, &set, SFD_CLOEXEC));
      if (!fd) return sys_error(fmt::format("signalfd for open file {}", of->id));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "signalfd"));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& signalfd_kind() {
  static const SignalfdKind kind;
  return kind;
}

}  // namespace ckpt::fds
