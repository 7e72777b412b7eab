// POSIX message queues (mq_open): the queue's name, limits, owner, mode and messages, and each
// open file's access mode and O_NONBLOCK.
//
// A queue lives in the IPC namespace, not in the process, and the kernel offers no way to read
// its messages without taking them: the dump takes them all while the tree is frozen and sends
// them straight back in the order they came out (highest priority first, oldest first within
// one), which is the order they go out again. Only what a process outside the tree does with the
// queue during those microseconds could tell. The first open file of a queue carries it; the
// others name it by inode.
//
// At restore a queue that is gone (a reboot, mq_unlink, or the tree's end took the last holder
// of an unlinked one) is created with its name, limits and messages; an unlinked one is unlinked
// again once its open files exist. A named queue that still exists (the tree was killed, the
// queue stays) is reused when its limits are the image's and no process holds it open: its
// messages are then set back to the image's. Refused, naming them: a queue with a notification
// registered (mq_notify: its sigevent cannot be read back), one of another IPC namespace, one
// still open in a process outside the image at restore, one whose limits this machine refuses
// (above /proc/sys/fs/mqueue/msg_max or msgsize_max, which only CAP_SYS_RESOURCE passes).
#include <fcntl.h>
#include <mqueue.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/log.hpp"
#include "resources/fds/fd_access.hpp"
#include "resources/fds/fd_kind.hpp"

namespace ckpt::fds {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kDeleted = " (deleted)";
constexpr long kMqueueMagic = 0x19800202;  // ipc/mqueue.c; not in linux/magic.h

struct QueuedMessage {
  uint32_t priority = 0;
  schema::Bytes text;
  template <class V>
  void visit(V& v) {
    v("priority", priority), v("text", text);
  }
};

struct QueueState {
  int64_t max_messages = 0, message_size = 0;  // mq_maxmsg, mq_msgsize
  uint32_t mode = 0, uid = 0, gid = 0;
  std::vector<QueuedMessage> messages;  // in the order mq_receive gave them
  template <class V>
  void visit(V& v) {
    v("max_messages", max_messages), v("message_size", message_size), v("mode", mode);
    v("uid", uid), v("gid", gid), v("messages", messages);
  }
};

struct MqueuePayload {
  uint64_t queue = 0;  // the queue's inode number: every open file of it has the same
  std::string name;    // "/NAME", its name in the namespace (its last one, if unlinked)
  bool unlinked = false;
  std::optional<QueueState> state;  // on the first open file of each queue
  template <class V>
  void visit(V& v) {
    v("queue", queue), v("name", name), v("unlinked", unlinked), v("state", state);
  }
};

std::string fd_path(pid_t pid, int fd) {
  return fmt::format("/proc/{}/fd/{}", pid, fd);
}

// The pid in the "NOTIFY_PID:" field of what reading a queue gives, 0 when none is registered.
Result<pid_t> notify_pid(int q, std::string_view what) {
  char buf[256] = {};
  ssize_t n = ::pread(q, buf, sizeof buf - 1, 0);
  if (n < 0) return sys_error(fmt::format("read the state of {}", what));
  const char* at = std::strstr(buf, "NOTIFY_PID:");
  if (!at) return errorf("the state of {} has no NOTIFY_PID: '{}'", what, buf);
  return static_cast<pid_t>(std::strtol(at + 11, nullptr, 10));
}

// Takes every message out of `q` and sends them back in the same order, even when a step
// fails: the queue is left as it was (but for what others did meanwhile).
Result<std::vector<QueuedMessage>> read_messages(int q, const mq_attr& attr,
                                                 std::string_view what) {
  std::vector<QueuedMessage> out;
  std::vector<char> buf(static_cast<size_t>(attr.mq_msgsize));
  std::optional<Error> failed;
  for (long i = 0; i < attr.mq_curmsgs; ++i) {
    unsigned prio = 0;
    ssize_t n = ::mq_receive(q, buf.data(), buf.size(), &prio);
    if (n < 0) {
      if (errno != EAGAIN) failed = sys_error(fmt::format("mq_receive from {}", what));
      break;
    }
    out.push_back({prio, schema::Bytes(buf.begin(), buf.begin() + n)});
  }
  size_t back = 0;
  for (auto& m : out) {
    if (::mq_send(q, reinterpret_cast<const char*>(m.text.data()), m.text.size(), m.priority) < 0)
      break;
    ++back;
  }
  if (back < out.size())
    return sys_error(
        fmt::format("{}: {} of its {} messages could not be put back after reading "
                    "them (a process outside the tree filled it meanwhile)",
                    what, out.size() - back, out.size()));
  if (failed) return *failed;
  return out;
}

Result<QueueState> read_queue(FdProbe& p, std::string_view what) {
  ScopedFd q(::open(fd_path(p.pid, p.fd).c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!q) return sys_error(fmt::format("open {}", what));
  CKPT_TRY_ASSIGN(pid_t notified, notify_pid(q.get(), what));
  if (notified != 0)
    return errorf(
        "pid {}: fd {} is {}, on which pid {} registered a notification (mq_notify), which ckpt "
        "cannot save yet",
        p.pid, p.fd, what, notified);
  mq_attr attr{};
  if (::mq_getattr(q.get(), &attr) < 0) return sys_error(fmt::format("mq_getattr {}", what));
  QueueState s{attr.mq_maxmsg, attr.mq_msgsize, p.st.st_mode & 07777, p.st.st_uid, p.st.st_gid, {}};
  CKPT_TRY_ASSIGN(s.messages, read_messages(q.get(), attr, what));
  return s;
}

// The device of the queues of ckpt's IPC namespace, where the restore makes them: that of a
// queue made and unlinked at once (the namespace's queues share one superblock).
Result<dev_t> our_queues_device() {
  static std::optional<dev_t> known;
  if (known) return *known;
  mq_attr attr{};
  attr.mq_maxmsg = 1;
  attr.mq_msgsize = 1;
  std::string name = fmt::format("/ckpt-probe-{}", ::getpid());
  ScopedFd probe(::mq_open(name.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &attr));
  if (!probe)
    return sys_error(fmt::format("mq_open {} (to learn this IPC namespace's queues)", name));
  ::mq_unlink(name.c_str());
  struct stat st {};
  if (::fstat(probe.get(), &st) < 0) return sys_error(fmt::format("fstat {}", name));
  known = st.st_dev;
  return *known;
}

// A queue's link: "/NAME" (mq_open's, from a mount of the namespace that no path reaches) or a
// path into a mounted mqueue filesystem (/dev/mqueue/NAME), maybe " (deleted)". Only those are
// statfs'ed: a call per regular file of a process that holds thousands would lengthen the freeze.
bool looks_like_queue(std::string_view link) {
  if (link.ends_with(kDeleted)) link.remove_suffix(kDeleted.size());
  return (link.size() > 1 && link.rfind('/') == 0) || link.starts_with("/dev/mqueue/");
}

bool saved_already(const schema::ImageRoot& image, uint64_t queue) {
  for (auto& of : image.open_files) {
    if (of.kind != "mqueue") continue;
    auto m = payload_of<MqueuePayload>(of);
    if (m.ok() && m->queue == queue && m->state) return true;
  }
  return false;
}

// A process other than ckpt with a descriptor of the queue `q` (whose link reads `link`), or 0.
pid_t holder_of(int q, const std::string& link) {
  struct stat mine {};
  if (::fstat(q, &mine) < 0) return 0;
  std::error_code ec;
  for (auto& dir : fs::directory_iterator("/proc", ec)) {
    std::string name = dir.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = static_cast<pid_t>(std::strtol(name.c_str(), nullptr, 10));
    if (pid == ::getpid()) continue;
    std::error_code fd_ec;
    for (auto& fd : fs::directory_iterator(dir.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      if (fs::read_symlink(fd.path(), link_ec).string() != link) continue;
      struct stat st {};
      if (::stat(fd.path().c_str(), &st) == 0 && st.st_dev == mine.st_dev &&
          st.st_ino == mine.st_ino)
        return pid;
    }
  }
  return 0;
}

// An existing queue of the image's name, taken over: its limits must be the image's and nobody
// may hold it; what it holds now is thrown away (the image's messages go in next).
Result<ScopedFd> take_over(const MqueuePayload& m, const std::string& what) {
  ScopedFd q(::mq_open(m.name.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!q) return sys_error(fmt::format("mq_open {} (it exists)", what));
  struct stat st {};
  if (::fstat(q.get(), &st) < 0) return sys_error(fmt::format("fstat {}", what));
  if (st.st_ino != m.queue)
    return errorf(
        "{} exists but is another queue than the image's (made since the dump: inode {}, the "
        "image's was {}); ckpt leaves it as it is",
        what, st.st_ino, m.queue);
  mq_attr attr{};
  if (::mq_getattr(q.get(), &attr) < 0) return sys_error(fmt::format("mq_getattr {}", what));
  if (attr.mq_maxmsg != m.state->max_messages || attr.mq_msgsize != m.state->message_size)
    return errorf(
        "{} exists with room for {} messages of {} bytes, not {} of {} as in the image; ckpt "
        "leaves it as it is",
        what, attr.mq_maxmsg, attr.mq_msgsize, m.state->max_messages, m.state->message_size);
  if (pid_t other = holder_of(q.get(), m.name))
    return errorf(
        "{} still exists and pid {}, not in the image, holds it open: its messages may have "
        "moved on since the dump; ckpt leaves it as it is",
        what, other);
  std::vector<char> buf(static_cast<size_t>(attr.mq_msgsize));
  long dropped = 0;
  while (::mq_receive(q.get(), buf.data(), buf.size(), nullptr) >= 0) ++dropped;
  log::info("fds", "{} still existed: {} messages it held replaced by the image's {}", what,
            dropped, m.state->messages.size());
  return q;
}

// A queue made (or taken over) for the restore, open in ckpt under `name` until it is done.
struct MadeQueue {
  ScopedFd fd;
  std::string name;
  bool unlink = false;  // once every open file of it exists
};

// The queue with the image's name (or, when that is taken and the queue was unlinked anyway,
// another), limits, owner and mode, holding the image's messages.
Result<MadeQueue> make_queue(const MqueuePayload& m, const std::string& what) {
  const QueueState& s = *m.state;
  mq_attr attr{};
  attr.mq_maxmsg = s.max_messages;
  attr.mq_msgsize = s.message_size;
  MadeQueue made{{}, m.name, m.unlinked};
  auto create = [&] {
    return ScopedFd(::mq_open(made.name.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_CREAT | O_EXCL,
                              0600, &attr));
  };
  made.fd = create();
  if (!made.fd && errno == EEXIST && m.unlinked) {
    made.name = fmt::format("/ckpt-{}-{}", ::getpid(), m.queue);
    made.fd = create();
  }
  if (!made.fd && errno == EEXIST && !m.unlinked) {
    CKPT_TRY_ASSIGN(made.fd, take_over(m, what));
  } else if (!made.fd) {
    return sys_error(fmt::format(
        "mq_open {} with room for {} messages of {} bytes (this machine's limits without "
        "CAP_SYS_RESOURCE: /proc/sys/fs/mqueue/msg_max, msgsize_max)",
        what, s.max_messages, s.message_size));
  }
  if (::fchown(made.fd.get(), s.uid, s.gid) < 0 || ::fchmod(made.fd.get(), s.mode) < 0)
    return sys_error(fmt::format("set the owner and mode of {}", what));
  return made;
}

Status fill(int q, const QueueState& s, const std::string& what) {
  for (auto& msg : s.messages)
    if (::mq_send(q, reinterpret_cast<const char*>(msg.text.data()), msg.text.size(),
                  msg.priority) < 0)
      return sys_error(fmt::format("mq_send to {}", what));
  return {};
}

class MqueueKind final : public FdKind {
 public:
  std::string_view name() const override { return "mqueue"; }
  bool claims(FdProbe& p, const DumpFlags&) const override {
    if (!S_ISREG(p.st.st_mode) || !looks_like_queue(p.link)) return false;
    struct statfs fs {};
    return ::statfs(fd_path(p.pid, p.fd).c_str(), &fs) == 0 && fs.f_type == kMqueueMagic;
  }
  Status dump(DumpEnv& env, FdProbe& p, schema::OpenFile& of) const override {
    MqueuePayload m;
    m.queue = p.st.st_ino;
    m.unlinked = p.link.ends_with(kDeleted);
    std::string path = m.unlinked ? p.link.substr(0, p.link.size() - kDeleted.size()) : p.link;
    // The filesystem is flat: the name is the last component, whatever mount it was opened by.
    m.name = path.substr(path.rfind('/'));
    std::string what = fmt::format("the POSIX message queue {}", m.name);
    // Of a namespace the process is in, or was in before an unshare().
    CKPT_TRY_ASSIGN(dev_t ours, our_queues_device());
    if (p.st.st_dev != ours)
      return errorf("pid {}: fd {} is {} of another IPC namespace, which ckpt cannot save yet",
                    p.pid, p.fd, what);
    if (!saved_already(env.image, m.queue)) {
      CKPT_TRY_ASSIGN(m.state, read_queue(p, what));
    }
    of.payload = schema::encode(m);
    return {};
  }
  Status recreate(const RecreateEnv&, const std::vector<const schema::OpenFile*>& mine,
                  OpenedFiles& out) const override {
    std::map<uint64_t, std::vector<std::pair<const schema::OpenFile*, MqueuePayload>>> queues;
    for (auto* of : mine) {
      CKPT_TRY_ASSIGN(MqueuePayload m, payload_of<MqueuePayload>(*of));
      queues[m.queue].emplace_back(of, std::move(m));
    }
    for (auto& [queue, files] : queues) {
      auto first = std::find_if(files.begin(), files.end(),
                                [](auto& f) { return f.second.state.has_value(); });
      if (first == files.end())
        return errorf("open file {}: POSIX message queue {} ({}) has no state in the image",
                      files.front().first->id, files.front().second.name, queue);
      std::string what = fmt::format("the POSIX message queue {}", first->second.name);
      CKPT_TRY_ASSIGN(MadeQueue q, make_queue(first->second, what));
      Status opened = open_files(q, files, what, out);
      // An unlinked queue goes nameless again whatever happened: a failed restore leaves no
      // name behind that the original did not have.
      if (q.unlink && ::mq_unlink(q.name.c_str()) < 0 && opened.ok())
        return sys_error(fmt::format("mq_unlink {}", what));
      CKPT_TRY(opened);
    }
    return {};
  }

 private:
  // Fills the queue, then opens each open file of it by name, as mq_open does (an open() of
  // /proc/self/fd/N would add O_LARGEFILE).
  static Status open_files(
      const MadeQueue& q,
      const std::vector<std::pair<const schema::OpenFile*, MqueuePayload>>& files,
      const std::string& what, OpenedFiles& out) {
    auto first = std::find_if(files.begin(), files.end(),
                              [](auto& f) { return f.second.state.has_value(); });
    CKPT_TRY(fill(q.fd.get(), *first->second.state, what));
    for (auto& [of, m] : files) {
      ScopedFd fd(::mq_open(q.name.c_str(), (of->flags & (O_ACCMODE | O_NONBLOCK)) | O_CLOEXEC));
      if (!fd) return sys_error(fmt::format("mq_open {} again", what));
      CKPT_TRY(seek_to(fd.get(), of->pos, what));
      out[of->id] = std::move(fd);
    }
    return {};
  }
};

}  // namespace

const FdKind& mqueue_kind() {
  static const MqueueKind kind;
  return kind;
}

}  // namespace ckpt::fds
