// Every socket no other kind claims: refused, naming it as precisely as the kernel lets us
// ("a connected TCP socket 127.0.0.1:80 -> 10.0.0.2:4242").
#include "resources/fds/fd_kind.hpp"
#include "resources/fds/inet.hpp"

namespace ckpt::fds {
namespace {

class OtherSocketKind final : public FdKind {
 public:
  std::string_view name() const override { return "socket"; }
  bool claims(FdProbe& p, const DumpFlags&) const override { return S_ISSOCK(p.st.st_mode); }
  Status dump(DumpEnv&, FdProbe& p, schema::OpenFile&) const override {
    CKPT_TRY_ASSIGN(int sock, p.borrowed());
    return errorf("pid {}: fd {} is {}, {}, which ckpt cannot save yet", p.pid, p.fd, p.link,
                  inet::describe_socket(sock, p.domain, p.type));
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles&) const override {
    if (mine.empty()) return {};
    return errorf("open file {}: this kind of socket is not restored", mine.front()->id);
  }
};

}  // namespace

const FdKind& other_socket_kind() {
  static const OtherSocketKind kind;
  return kind;
}

}  // namespace ckpt::fds
