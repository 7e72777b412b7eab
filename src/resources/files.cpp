#include "resources/files.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "common/log.hpp"
#include "proc/misc.hpp"
#include "proc/proc_file.hpp"
#include "ptrace/remote_syscalls.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/locks.hpp"

namespace ckpt::files {
namespace {

namespace fs = std::filesystem;

const fds::FdKind* identify(fds::FdProbe& p, const fds::DumpFlags& flags) {
  for (const fds::FdKind* k : fds::all_kinds())
    if (k->claims(p, flags)) return k;
  return nullptr;
}

// F_GETOWN_EX and F_GETSIG: who gets the open file's O_ASYNC (and socket SIGURG) signals.
// Looked at only where it can matter, each look being a borrowed copy of the fd: pipes too, whose
// owner and signal may be set before O_ASYNC is.
Result<std::optional<schema::FileOwner>> read_owner(fds::FdProbe& p) {
  using Owner = std::optional<schema::FileOwner>;
  if (!(p.info.flags & O_ASYNC) && !S_ISSOCK(p.st.st_mode) && !S_ISFIFO(p.st.st_mode))
    return Owner();
  CKPT_TRY_ASSIGN(int fd, p.borrowed());
  f_owner_ex owner{};
  if (::fcntl(fd, F_GETOWN_EX, &owner) < 0)
    return sys_error(fmt::format("fcntl(F_GETOWN_EX) on pid {} fd {}", p.pid, p.fd));
  int sig = ::fcntl(fd, F_GETSIG);
  if (owner.pid == 0 && sig <= 0) return Owner();
  return Owner(schema::FileOwner{owner.type, owner.pid, std::max(sig, 0)});
}

// Options every kind of socket has, so kept here rather than by each kind: SO_RCVTIMEO and
// SO_SNDTIMEO (a program that counts on a receive timeout to wake up, as ping does between its
// requests, would wait forever without them), SO_RCVLOWAT (when a read or poll wakes) and
// SO_LINGER (what close() does with unsent data).
Result<std::optional<schema::SocketOptions>> read_socket_options(fds::FdProbe& p) {
  using Options = std::optional<schema::SocketOptions>;
  if (!S_ISSOCK(p.st.st_mode)) return Options();
  CKPT_TRY_ASSIGN(int fd, p.borrowed());
  auto get = [&](int opt, const char* name, auto& out) -> Status {
    socklen_t len = sizeof(out);
    if (::getsockopt(fd, SOL_SOCKET, opt, &out, &len) < 0)
      return sys_error(fmt::format("getsockopt {} on pid {} fd {}", name, p.pid, p.fd));
    return {};
  };
  timeval rcv{}, snd{};
  linger lg{};
  schema::SocketOptions o;
  CKPT_TRY(get(SO_RCVTIMEO, "SO_RCVTIMEO", rcv));
  CKPT_TRY(get(SO_SNDTIMEO, "SO_SNDTIMEO", snd));
  CKPT_TRY(get(SO_RCVLOWAT, "SO_RCVLOWAT", o.rcvlowat));
  CKPT_TRY(get(SO_LINGER, "SO_LINGER", lg));
  o.rcvtimeo_us = int64_t(rcv.tv_sec) * 1000000 + rcv.tv_usec;
  o.sndtimeo_us = int64_t(snd.tv_sec) * 1000000 + snd.tv_usec;
  o.linger_s = lg.l_onoff ? lg.l_linger : -1;
  if (o.rcvtimeo_us == 0 && o.sndtimeo_us == 0 && o.rcvlowat == 1 && o.linger_s < 0)
    return Options();
  return Options(o);
}

Status set_socket_options(int fd, const schema::OpenFile& of) {
  const schema::SocketOptions& o = *of.socket_options;
  auto set = [&](int opt, const char* name, const auto& value) -> Status {
    if (::setsockopt(fd, SOL_SOCKET, opt, &value, sizeof(value)) < 0)
      return sys_error(fmt::format("setsockopt {} for open file {} ({})", name, of.id, of.path));
    return {};
  };
  auto tv = [](int64_t us) {
    return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  };
  CKPT_TRY(set(SO_RCVTIMEO, "SO_RCVTIMEO", tv(o.rcvtimeo_us)));
  CKPT_TRY(set(SO_SNDTIMEO, "SO_SNDTIMEO", tv(o.sndtimeo_us)));
  CKPT_TRY(set(SO_RCVLOWAT, "SO_RCVLOWAT", o.rcvlowat));
  linger lg{o.linger_s >= 0, std::max(o.linger_s, 0)};
  return set(SO_LINGER, "SO_LINGER", lg);
}

Result<uint32_t> in_flight_file(DumpContext& ctx, const fds::DumpFlags& flags, fds::FdProbe& p,
                                ScopedFd copy);

Result<uint32_t> add_open_file(DumpContext& ctx, fds::FdProbe& p, const fds::DumpFlags& flags) {
  const fds::FdKind* kind = identify(p, flags);
  if (!kind) return errorf("pid {}: fd {} is {}, which ckpt cannot save yet", p.pid, p.fd, p.link);
  TreeState& tree = *ctx.tree;
  schema::OpenFile of;
  of.id = static_cast<uint32_t>(tree.image.open_files.size());
  of.kind = std::string(kind->name());
  of.flags = p.info.flags & ~uint32_t(O_CLOEXEC);
  of.pos = p.info.pos;
  of.path = p.link;
  CKPT_TRY_ASSIGN(of.owner, read_owner(p));
  CKPT_TRY_ASSIGN(of.socket_options, read_socket_options(p));
  // The slot is taken before dump(): the files in flight a socket's dump() adds come after it.
  tree.image.open_files.emplace_back();
  tree.holders.push_back({{p.pid, p.fd}});
  fds::DumpEnv env{ctx, flags, tree.image, [&ctx, &flags](fds::FdProbe& in, ScopedFd copy) {
                     return in_flight_file(ctx, flags, in, std::move(copy));
                   }};
  CKPT_TRY(kind->dump(env, p, of));
  uint32_t id = of.id;
  tree.image.open_files[id] = std::move(of);
  tree.open_files_by_inode.emplace(std::make_pair(p.st.st_dev, p.st.st_ino), id);
  return id;
}

// The open file `p` refers to: one the tree already holds (dup, fork: kcmp says so), or a new
// one described by its kind.
Result<uint32_t> open_file_of(DumpContext& ctx, fds::FdProbe& p, const fds::DumpFlags& flags) {
  TreeState& tree = *ctx.tree;
  auto [first, last] = tree.open_files_by_inode.equal_range({p.st.st_dev, p.st.st_ino});
  for (auto it = first; it != last; ++it) {
    auto [pid, fd] = tree.holders[it->second].front();
    CKPT_TRY_ASSIGN(bool same, proc::same_open_file(pid, fd, p.pid, p.fd));
    if (!same) continue;
    tree.holders[it->second].emplace_back(p.pid, p.fd);
    return it->second;
  }
  return add_open_file(ctx, p, flags);
}

// A descriptor in flight, `p` probing ckpt's own copy: the open file a process of the tree
// already holds, else a new one whose only holder is the copy, kept open until the dump ends so
// that fds met later can be compared with it.
Result<uint32_t> in_flight_file(DumpContext& ctx, const fds::DumpFlags& flags, fds::FdProbe& p,
                                ScopedFd copy) {
  TreeState& tree = *ctx.tree;
  auto [first, last] = tree.open_files_by_inode.equal_range({p.st.st_dev, p.st.st_ino});
  for (auto it = first; it != last; ++it) {
    auto [pid, fd] = tree.holders[it->second].front();
    CKPT_TRY_ASSIGN(bool same, proc::same_open_file(pid, fd, p.pid, p.fd));
    if (same) return it->second;
  }
  CKPT_TRY_ASSIGN(uint32_t id, add_open_file(ctx, p, flags));
  tree.in_flight.push_back(std::move(copy));
  return id;
}

// The first process outside the tree with an fd linking to `want` ("socket:[INO]"), or 0. Scans
// every process's fds: asked only when a socket's peer is not in the tree, to name it.
pid_t outside_holder(const std::string& want, const std::set<pid_t>& tree) {
  std::error_code ec;
  for (auto& dir : fs::directory_iterator("/proc", ec)) {
    std::string name = dir.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = static_cast<pid_t>(std::strtol(name.c_str(), nullptr, 10));
    if (tree.count(pid) || pid == ::getpid()) continue;
    std::error_code fd_ec;
    for (auto& fd : fs::directory_iterator(dir.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      if (fs::read_symlink(fd.path(), link_ec).string() == want) return pid;
    }
  }
  return 0;
}

// A process that gets an open file's signals must exist when the owner is set again: one of
// the tree. (Thread and group owners are checked when they are set at restore.)
Status check_owners(const TreeState& tree, const std::set<pid_t>& pids) {
  for (auto& of : tree.image.open_files) {
    if (!of.owner || of.owner->type != F_OWNER_PID || of.owner->pid == 0) continue;
    if (pids.count(of.owner->pid)) continue;
    auto [pid, fd] = tree.holders[of.id].front();
    return errorf(
        "pid {}: fd {} sends its signals to pid {}, outside the dumped processes, which ckpt "
        "cannot save",
        pid, fd, of.owner->pid);
  }
  return {};
}

// Only the main thread's table is saved (/proc/PID/fd): a thread that unshared its own would
// come back with the main thread's fds, without its own or the POSIX locks taken through them.
Status check_threads_share_the_table(const DumpContext& ctx) {
  for (size_t i = 1; i < ctx.threads.size(); ++i) {
    CKPT_TRY_ASSIGN(bool same, proc::same_file_table(ctx.pid, ctx.threads[i].tid));
    if (!same)
      return errorf(
          "pid {}: thread {} has a file table of its own (unshare CLONE_FILES), which ckpt "
          "cannot save yet",
          ctx.pid, ctx.threads[i].tid);
  }
  return {};
}

}  // namespace

Status dump(DumpContext& ctx, const fds::DumpFlags& flags) {
  CKPT_TRY(check_threads_share_the_table(ctx));
  CKPT_TRY_ASSIGN(auto numbers, proc::list_fds(ctx.pid));
  ctx.rec.fds.clear();
  for (int fd : numbers) {
    CKPT_TRY_ASSIGN(fds::FdProbe p, fds::FdProbe::read(ctx.pid, fd));
    CKPT_TRY_ASSIGN(uint32_t id, open_file_of(ctx, p, flags));
    ctx.rec.fds.push_back({fd, id, (p.info.flags & O_CLOEXEC) != 0});
    CKPT_TRY(locks::dump_fd(ctx, p, id));
  }
  return {};
}

Status link(const std::vector<DumpContext*>& procs) {
  TreeState& tree = *procs.front()->tree;
  std::set<pid_t> pids;
  for (auto* ctx : procs) pids.insert(ctx->pid);
  CKPT_TRY(check_owners(tree, pids));
  std::map<std::string, std::vector<fds::LinkedFile>> by_kind;
  for (auto& of : tree.image.open_files) {
    fds::LinkedFile f{&of, {}};
    for (auto [pid, fd] : tree.holders[of.id]) f.holders.push_back({pid, fd});
    by_kind[of.kind].push_back(std::move(f));
  }
  fds::LinkEnv env{{pids.begin(), pids.end()},
                   [&](const std::string& want) { return outside_holder(want, pids); }};
  CKPT_TRY(locks::check_deleted_files(tree, env.outside_holder));
  for (auto& [name, files] : by_kind) CKPT_TRY(fds::find_kind(name)->link(env, files));
  return {};
}

std::string handed_key(uint32_t id) {
  return fmt::format("of:{}", id);
}

namespace {

bool opened_after_tree(const schema::OpenFile& of) {
  const fds::FdKind* kind = fds::find_kind(of.kind);
  return kind && kind->opened_after_tree(of);
}

// The descriptors of `proc` that place_after_tree() puts in place: those of open files opened
// after the tree that the restorer did not hand over.
std::set<int> placed_late(const schema::ImageRoot& image, const schema::ProcessRecord& proc,
                          const std::function<bool(uint32_t id)>& handed) {
  std::set<int> late;
  for (auto& f : proc.fds)
    if (f.open_file < image.open_files.size() && !handed(f.open_file) &&
        opened_after_tree(image.open_files[f.open_file]))
      late.insert(f.fd);
  return late;
}

}  // namespace

Result<fds::OpenedFiles> recreate(const fds::RecreateEnv& env,
                                  const std::vector<InheritFd>& inherit) {
  const auto& files = env.image.open_files;
  fds::OpenedFiles out;
  std::map<std::string, std::vector<const schema::OpenFile*>> by_kind;
  for (size_t i = 0; i < files.size(); ++i) {
    const schema::OpenFile& of = files[i];
    if (of.id != i) return errorf("open file {} is listed as number {}", of.id, i);
    auto given = std::find_if(inherit.begin(), inherit.end(),
                              [&](const InheritFd& in) { return in.key == of.path; });
    if (given == inherit.end()) {
      by_kind[of.kind].push_back(&of);
      continue;
    }
    ScopedFd copy(::fcntl(given->fd, F_DUPFD_CLOEXEC, 3));
    if (!copy) return sys_error(fmt::format("--inherit-fd fd[{}]:{}", given->fd, given->key));
    out[of.id] = std::move(copy);
  }
  for (auto& [name, mine] : by_kind)
    if (!fds::find_kind(name))
      return errorf("open file {} is of kind '{}', unknown to this ckpt", mine[0]->id, name);
  // In the registry's order, which some kinds rely on (see registry.cpp), within each rank.
  std::vector<const fds::FdKind*> order = fds::all_kinds();
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return a->recreate_rank() < b->recreate_rank(); });
  for (const fds::FdKind* kind : order) {
    auto mine = by_kind.find(std::string(kind->name()));
    if (mine != by_kind.end()) CKPT_TRY(kind->recreate(env, mine->second, out));
  }
  for (auto& of : files) {
    if (!out.count(of.id)) {
      if (opened_after_tree(of)) continue;
      return errorf("open file {} ({}) was not recreated", of.id, of.path);
    }
    // An --inherit-fd replacement may be something else than a socket (a pipe for a stream).
    struct stat st {};
    if (of.socket_options && ::fstat(out[of.id].get(), &st) == 0 && S_ISSOCK(st.st_mode))
      CKPT_TRY(set_socket_options(out[of.id].get(), of));
  }
  return out;
}

Status set_owners(const schema::ImageRoot& image, const HandedFds& handed) {
  for (auto& of : image.open_files) {
    if (!of.owner) continue;
    int fd = handed.find(handed_key(of.id));
    if (fd < 0) return errorf("open file {} was not recreated", of.id);
    f_owner_ex owner{static_cast<__pid_type>(of.owner->type), of.owner->pid};
    if (owner.pid != 0 && ::fcntl(fd, F_SETOWN_EX, &owner) < 0)
      return sys_error(
          fmt::format("fcntl(F_SETOWN_EX, {}) for open file {} ({})", owner.pid, of.id, of.path));
    if (of.owner->signo > 0 && ::fcntl(fd, F_SETSIG, of.owner->signo) < 0)
      return sys_error(fmt::format("fcntl(F_SETSIG, {}) for open file {}", of.owner->signo, of.id));
  }
  return {};
}

namespace {

// Closes every fd but those of `keep` (sorted).
void close_all_but(const std::vector<int>& keep) {
  unsigned from = 0;
  for (int fd : keep) {
    if (static_cast<unsigned>(fd) > from) ::close_range(from, static_cast<unsigned>(fd) - 1, 0);
    from = static_cast<unsigned>(fd) + 1;
  }
  ::close_range(from, ~0U, 0);
}

// Moves the fds to keep into one block above `top` (the build closes that block at the end),
// closing every other fd. The fds in use are not listed: a puppet inherits dozens from the
// restorer, and listing /proc/self/fd cost it more than all the rest of its fd work.
Status clear_fd_table(int top, std::vector<int>& keep) {
  std::vector<int> sorted = keep;
  std::sort(sorted.begin(), sorted.end());
  close_all_but(sorted);
  // Now nothing is open above the highest kept fd.
  int base = std::max(top, sorted.empty() ? 0 : sorted.back()) + 1;
  for (size_t i = 0; i < keep.size(); ++i) {
    int to = base + static_cast<int>(i);
    if (::dup3(keep[i], to, O_CLOEXEC) < 0) return sys_error("dup3 kept fd");
    keep[i] = to;
  }
  ::close_range(0, static_cast<unsigned>(base - 1), 0);
  ::close_range(static_cast<unsigned>(base + static_cast<int>(keep.size())), ~0U, 0);
  return {};
}

Status place(const schema::ProcessRecord& proc, const HandedFds& handed,
             const std::set<int>& late) {
  std::unordered_map<std::string_view, int> by_key;
  for (size_t i = 0; i < handed.keys.size() && i < handed.fds.size(); ++i)
    by_key.emplace(handed.keys[i], handed.fds[i]);
  for (auto& f : proc.fds) {
    if (late.count(f.fd)) continue;
    auto it = by_key.find(handed_key(f.open_file));
    if (it == by_key.end())
      return errorf("fd {}: the restorer did not hand over open file {}", f.fd, f.open_file);
    if (::dup3(it->second, f.fd, f.cloexec ? O_CLOEXEC : 0) < 0)
      return sys_error(fmt::format("dup3 open file {} to fd {}", f.open_file, f.fd));
  }
  return {};
}

bool held_before(const schema::ImageRoot& image, size_t index, uint32_t id) {
  for (size_t i = 0; i < index; ++i)
    for (auto& f : image.processes[i].fds)
      if (f.open_file == id) return true;
  return false;
}

// O_ASYNC registers the open file for signals only when F_SETFL turns it on (open() with it
// registers nothing), and the signal names the fd it was turned on through: off and on again
// here, at the fd's own number.
Status rearm_async(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_ASYNC) < 0 || ::fcntl(fd, F_SETFL, fl | O_ASYNC) < 0)
    return sys_error(fmt::format("fd {}: turn O_ASYNC on again", fd));
  return {};
}

Status settle(const schema::ImageRoot& image, size_t index, const std::set<int>& late) {
  const schema::ProcessRecord& proc = image.processes[index];
  std::set<uint32_t> done;
  for (auto& f : proc.fds) {
    if (late.count(f.fd) || !done.insert(f.open_file).second) continue;
    const schema::OpenFile& of = image.open_files.at(f.open_file);
    const fds::FdKind* kind = fds::find_kind(of.kind);
    if (!kind) return errorf("open file {}: unknown kind '{}'", of.id, of.kind);
    fds::SettleEnv env{proc.pid, proc, !held_before(image, index, of.id), late};
    CKPT_TRY(kind->settle(env, of, f.fd));
    if ((of.flags & O_ASYNC) && env.first_holder) CKPT_TRY(rearm_async(f.fd));
  }
  return {};
}

}  // namespace

Status restore_in_puppet(const schema::ImageRoot& image, size_t index, HandedFds& handed) {
  const schema::ProcessRecord& proc = image.processes.at(index);
  int top = 2;
  for (auto& f : proc.fds) {
    if (f.fd < 0 || f.open_file >= image.open_files.size())
      return errorf("fd {} refers to open file {}, not in the image", f.fd, f.open_file);
    top = std::max(top, f.fd);
  }
  CKPT_TRY(clear_fd_table(top, handed.fds));
  std::set<int> late =
      placed_late(image, proc, [&](uint32_t id) { return handed.find(handed_key(id)) >= 0; });
  CKPT_TRY(place(proc, handed, late));
  return settle(image, index, late);
}

Result<fds::OpenedFiles> open_after_tree(const schema::ImageRoot& image, const HandedFds& handed) {
  fds::OpenedFiles out;
  for (auto& of : image.open_files) {
    if (!opened_after_tree(of) || handed.find(handed_key(of.id)) >= 0) continue;
    CKPT_TRY_ASSIGN(out[of.id], fds::find_kind(of.kind)->open_after_tree(of));
  }
  return out;
}

namespace {

class RemoteCalls final : public fds::InjectedCalls {
 public:
  explicit RemoteCalls(RestoreContext& ctx) : ctx_(ctx) {}
  Result<long> call(const char* name, long nr, std::array<uint64_t, 6> args) override {
    return ctx_.main_remote->call(name, nr, args);
  }
  Result<uint64_t> put(std::span<const std::byte> bytes) override {
    if (bytes.size() > ctx_.scratch.size)
      return errorf("{} bytes do not fit the scratch memory of pid {}", bytes.size(), ctx_.pid);
    CKPT_TRY(write_remote(ctx_.pid, ctx_.scratch.addr, bytes.data(), bytes.size()));
    return ctx_.scratch.addr;
  }

 private:
  RestoreContext& ctx_;
};

// Takes open file `from` (an fd of the restorer) into the process at `fd`, through `restorer`,
// the process's pidfd of the restorer.
Status take_from_restorer(ptrace::RemoteSyscalls& remote, int restorer, int from,
                          const schema::FdRecord& f) {
  CKPT_TRY_ASSIGN(long got, remote.call("pidfd_getfd", SYS_pidfd_getfd,
                                        {uint64_t(restorer), uint64_t(from), 0}));
  // pidfd_getfd gives the lowest free number, which may already be the right one.
  if (got == f.fd) {
    if (!f.cloexec) CKPT_TRY(remote.call("fcntl(F_SETFD)", SYS_fcntl, {uint64_t(got), F_SETFD, 0}));
    return {};
  }
  CKPT_TRY(remote.call("dup3", SYS_dup3,
                       {uint64_t(got), uint64_t(f.fd), f.cloexec ? uint64_t(O_CLOEXEC) : 0}));
  CKPT_TRY(remote.call("close", SYS_close, {uint64_t(got)}));
  return {};
}

Status settle_late(RestoreContext& ctx, const std::set<int>& late) {
  const schema::ImageRoot& image = *ctx.image;
  size_t index = static_cast<size_t>(ctx.rec - image.processes.data());
  RemoteCalls calls(ctx);
  std::set<uint32_t> done;
  for (auto& f : ctx.rec->fds) {
    if (!done.insert(f.open_file).second) continue;
    const schema::OpenFile& of = image.open_files.at(f.open_file);
    fds::SettleEnv env{ctx.pid, *ctx.rec, !held_before(image, index, of.id), late};
    CKPT_TRY(fds::find_kind(of.kind)->settle_late(env, of, f.fd, calls));
  }
  return {};
}

}  // namespace

Status place_after_tree(RestoreContext& ctx) {
  if (!ctx.late_files || ctx.late_files->empty()) return {};
  ptrace::RemoteSyscalls& remote = *ctx.main_remote;
  int top = 2;
  for (auto& f : ctx.rec->fds) top = std::max(top, f.fd);
  int restorer = -1;  // the process's pidfd of the restorer, above every fd of the image
  std::set<int> late;
  for (auto& f : ctx.rec->fds) {
    auto it = ctx.late_files->find(f.open_file);
    if (it == ctx.late_files->end()) continue;
    if (restorer < 0) {
      CKPT_TRY_ASSIGN(long first, remote.call("pidfd_open(restorer)", SYS_pidfd_open,
                                              {uint64_t(::getpid()), 0}));
      CKPT_TRY_ASSIGN(long high,
                      remote.call("fcntl(F_DUPFD_CLOEXEC)", SYS_fcntl,
                                  {uint64_t(first), F_DUPFD_CLOEXEC, uint64_t(top + 1)}));
      CKPT_TRY(remote.call("close", SYS_close, {uint64_t(first)}));
      restorer = static_cast<int>(high);
    }
    Status st = take_from_restorer(remote, restorer, it->second.get(), f);
    if (!st.ok()) return st.error().wrap(fmt::format("fd {} (open file {})", f.fd, f.open_file));
    late.insert(f.fd);
  }
  if (restorer >= 0) CKPT_TRY(remote.call("close", SYS_close, {uint64_t(restorer)}));
  return settle_late(ctx, late);
}

}  // namespace ckpt::files
