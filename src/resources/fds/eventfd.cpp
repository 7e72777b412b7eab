// eventfd: its counter and semaphore mode, from fdinfo.
#include <sys/eventfd.h>
#include <unistd.h>

#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

struct EventfdPayload {
  uint64_t count = 0;
  bool semaphore = false;
  template <class V>
  void visit(V& v) {
    v("count", count), v("semaphore", semaphore);
  }
};

class EventfdKind final : public FdKind {
 public:
  std::string_view name() const override { return "eventfd"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:[eventfd]";
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    EventfdPayload e{p.info.eventfd_count.value_or(0), p.info.eventfd_semaphore.value_or(false)};
    of.payload = schema::encode(e);
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(EventfdPayload e, payload_of<EventfdPayload>(*of));
      ScopedFd fd(::eventfd(0, EFD_CLOEXEC | (e.semaphore ? EFD_SEMAPHORE : 0)));
      if (!fd) return sys_error(fmt::format("eventfd for open file {}", of->id));
      if (e.count > 0 && ::write(fd.get(), &e.count, sizeof(e.count)) != sizeof(e.count))
        return sys_error(fmt::format("refill eventfd of open file {} with {}", of->id, e.count));
      CKPT_TRY(set_status_flags(fd.get(), of->flags, "eventfd"));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& eventfd_kind() {
  static const EventfdKind kind;
  return kind;
}

}  // namespace ckpt::fds
