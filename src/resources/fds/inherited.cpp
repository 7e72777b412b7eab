// With --shell-job, the streams a process shares with whoever dumps it (the shell or supervisor
// that started it: the same open files as the dumper's own fds 0-2) and its terminal are not
// saved: restore gives it the same streams and terminal of whoever restores it. Anything else on
// fds 0-2 (a log file, /dev/null, a pipe to another process) is saved like any other open file.
#include <fcntl.h>
#include <unistd.h>

#include "proc/misc.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

constexpr int32_t kTerminal = -1;

struct InheritedPayload {
  int32_t from = kTerminal;  // the restorer's fd 0-2 to share, or its terminal
  template <class V>
  void visit(V& v) {
    v("from", from);
  }
};

// Which of the dumper's own fds 0-2 is the same open file as the probed fd, or -1.
int shared_stream(const FdProbe& p) {
  for (int k = 0; k <= 2; ++k)
    if (auto same = proc::same_open_file(p.pid, p.fd, ::getpid(), k); same.ok() && *same) return k;
  return -1;
}

Result<int> restorer_fd(const schema::OpenFile& of, int32_t from) {
  if (from >= 0 && from <= 2) {
    if (::fcntl(from, F_GETFD) < 0)
      return errorf("open file {} ({}) is the caller's fd {}, which this restore has not open",
                    of.id, of.path, from);
    return from;
  }
  for (int k = 0; k <= 2; ++k)
    if (::isatty(k)) return k;
  return errorf("open file {} was the terminal {}; restore it from a terminal", of.id, of.path);
}

class InheritedKind final : public FdKind {
 public:
  std::string_view name() const override { return "inherit"; }
  bool claims(FdProbe& p, const DumpFlags& flags) const override {
    return flags.shell_job && (is_tty_path(p.link) || shared_stream(p) >= 0);
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    int k = shared_stream(p);
    of.payload = schema::encode(InheritedPayload{k >= 0 ? k : kTerminal});
    return {};
  }
  Status recreate(const RecreateEnv& env, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    if (!mine.empty() && !env.shell_job)
      return make_error("the image was dumped with --shell-job: restore it with --shell-job");
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(InheritedPayload in, payload_of<InheritedPayload>(*of));
      CKPT_TRY_ASSIGN(int from, restorer_fd(*of, in.from));
      ScopedFd copy(::fcntl(from, F_DUPFD_CLOEXEC, 3));
      if (!copy) return sys_error(fmt::format("dup the caller's fd {}", from));
      out[of->id] = std::move(copy);
    }
    return {};
  }
};

}  // namespace

const FdKind& inherited_kind() {
  static const InheritedKind kind;
  return kind;
}

}  // namespace ckpt::fds
