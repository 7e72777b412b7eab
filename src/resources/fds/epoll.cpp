// epoll: every registration (the watched fd, its events and data), from fdinfo. A registration
// names a descriptor number of the process that made it, so the registrations are made again by
// the first restored process holding the epoll instance, once its descriptors are in place; the
// dump checks that those numbers still lead to the watched files in that process. Registrations
// of descriptors placed late (pidfds: fd_kind.hpp) are made once those are there.
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "proc/proc_file.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

struct EpollTarget {
  int32_t fd = 0;
  uint32_t events = 0;
  uint64_t data = 0;
  template <class V>
  void visit(V& v) {
    v("fd", fd), v("events", events), v("data", data);
  }
};

struct EpollPayload {
  std::vector<EpollTarget> targets;
  template <class V>
  void visit(V& v) {
    v("targets", targets);
  }
};

Status check_target(const FdProbe& p, const proc::EpollTarget& t) {
  struct stat st;
  std::string path = proc::proc_path(p.pid, fmt::format("fd/{}", t.tfd));
  if (::stat(path.c_str(), &st) < 0 || static_cast<uint64_t>(st.st_ino) != t.ino)
    return errorf(
        "pid {}: epoll fd {} watches fd {} of another process (or one closed since), which ckpt "
        "cannot save yet",
        p.pid, p.fd, t.tfd);
  return {};
}

class EpollKind final : public FdKind {
 public:
  std::string_view name() const override { return "epoll"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    return p.link == "anon_inode:[eventpoll]";
  }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile& of) const override {
    EpollPayload e;
    for (auto& t : p.info.epoll_targets) {
      CKPT_TRY(check_target(p, t));
      e.targets.push_back({t.tfd, t.events, t.data});
    }
    of.payload = schema::encode(e);
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    for (auto* of : mine) {
      ScopedFd fd(::epoll_create1(EPOLL_CLOEXEC));
      if (!fd) return sys_error(fmt::format("epoll_create1 for open file {}", of->id));
      out[of->id] = std::move(fd);
    }
    return {};
  }
  Status settle(const SettleEnv& env, const schema::OpenFile& of, int fd) const override {
    if (!env.first_holder) return {};
    CKPT_TRY_ASSIGN(EpollPayload e, payload_of<EpollPayload>(of));
    for (auto& t : e.targets) {
      if (env.placed_late.count(t.fd)) continue;
      epoll_event ev = event_of(t);
      if (::epoll_ctl(fd, EPOLL_CTL_ADD, t.fd, &ev) < 0)
        return sys_error(fmt::format("epoll fd {}: add fd {}", fd, t.fd));
    }
    return {};
  }
  Status settle_late(const SettleEnv& env, const schema::OpenFile& of, int fd,
                     InjectedCalls& calls) const override {
    if (!env.first_holder) return {};
    CKPT_TRY_ASSIGN(EpollPayload e, payload_of<EpollPayload>(of));
    for (auto& t : e.targets) {
      if (!env.placed_late.count(t.fd)) continue;
      epoll_event ev = event_of(t);
      CKPT_TRY_ASSIGN(uint64_t at, calls.put(std::as_bytes(std::span(&ev, 1))));
      auto added = calls.call("epoll_ctl(EPOLL_CTL_ADD)", SYS_epoll_ctl,
                              {uint64_t(fd), EPOLL_CTL_ADD, uint64_t(t.fd), at});
      if (!added.ok()) return added.error().wrap(fmt::format("epoll fd {}: add fd {}", fd, t.fd));
    }
    return {};
  }

 private:
  static epoll_event event_of(const EpollTarget& t) {
    epoll_event ev{};
    ev.events = t.events;
    ev.data.u64 = t.data;
    return ev;
  }
};

}  // namespace

const FdKind& epoll_kind() {
  static const EpollKind kind;
  return kind;
}

}  // namespace ckpt::fds
