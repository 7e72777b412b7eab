#include "resources/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <map>

#include "common/fs_util.hpp"
#include "common/hex.hpp"
#include "common/scoped_fd.hpp"
#include "proc/fdinfo.hpp"
#include "proc/misc.hpp"
#include "proc/proc_file.hpp"
#include "resources/deleted_files.hpp"
#include "resources/event_fds.hpp"
#include "resources/shared_files.hpp"
#include "resources/sockets.hpp"

namespace ckpt::files {
namespace {

bool is_tty_path(const std::string& p) {
  return p.rfind("/dev/pts/", 0) == 0 || p.rfind("/dev/tty", 0) == 0 || p == "/dev/console";
}

// Reads what a pipe holds without taking it: tee() into a pipe of our own.
Result<std::string> peek_pipe(pid_t pid, int fd) {
  CKPT_TRY_ASSIGN(ScopedFd src, borrow_fd(pid, fd));
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return sys_error("pipe2");
  ScopedFd r(p[0]), w(p[1]);
  int size = ::fcntl(src.get(), F_GETPIPE_SZ);
  if (size > 0) (void)::fcntl(w.get(), F_SETPIPE_SZ, size);
  ssize_t n = ::tee(src.get(), w.get(), INT_MAX, SPLICE_F_NONBLOCK);
  if (n < 0 && errno != EAGAIN) return sys_error(fmt::format("tee pid {} fd {}", pid, fd));
  std::string data(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0 && ::read(r.get(), data.data(), data.size()) != n)
    return sys_error(fmt::format("read copy of pipe pid {} fd {}", pid, fd));
  return data;
}

// With --shell-job, which of the restorer's standard streams fd `fd` of `pid` is to get: the
// root's own 0-2, a child's fd that is one of them (inherited), and terminals. -1: none (a
// child's stdout that is a pipe to its parent stays that pipe).
int shell_stream(pid_t pid, pid_t root, int fd, const std::string& link) {
  if (pid == root && fd <= 2) return fd;
  if (fd <= 2)
    for (int k = 0; k <= 2; ++k)
      if (auto same = proc::same_open_file(pid, fd, root, k); same.ok() && *same) return k;
  return is_tty_path(link) ? 0 : -1;
}

Result<json> describe_fd(pid_t pid, int fd, bool shell_job, pid_t root) {
  CKPT_TRY_ASSIGN(std::string link, proc::read_proc_link(pid, fmt::format("fd/{}", fd)));
  CKPT_TRY_ASSIGN(proc::FdInfo info, proc::read_fdinfo(pid, fd));
  json j{{"fd", fd}, {"flags", info.flags}, {"pos", info.pos}, {"path", link}};
  if (int from = shell_job ? shell_stream(pid, root, fd, link) : -1; from >= 0) {
    j["type"] = "inherit";
    j["from"] = from;
    return j;
  }
  struct stat st;
  std::string fd_path = proc::proc_path(pid, fmt::format("fd/{}", fd));
  if (::stat(fd_path.c_str(), &st) < 0)
    return sys_error(fmt::format("stat {} ({})", fd_path, link));
  if (link.rfind("anon_inode:", 0) == 0) {
    if (auto st_event = event_fds::describe(link, info, j)) {
      if (!st_event->ok()) return st_event->error().wrap(fmt::format("pid {}", pid));
      return j;
    }
  }
  j["dev"] = static_cast<uint64_t>(st.st_dev);
  j["ino"] = static_cast<uint64_t>(st.st_ino);
  if (auto sock = sockets::describe(pid, fd, link, j)) {
    if (!sock->ok()) return sock->error();
    return j;
  }
  if (link.rfind("pipe:", 0) == 0) {
    j["type"] = "pipe";
    if ((info.flags & O_ACCMODE) == O_RDONLY) {
      CKPT_TRY_ASSIGN(std::string data, peek_pipe(pid, fd));
      j["data"] = to_hex(data);
      CKPT_TRY_ASSIGN(ScopedFd self, open_file(fd_path, O_RDONLY | O_NONBLOCK));
      j["pipe_size"] = ::fcntl(self.get(), F_GETPIPE_SZ);
    }
    return j;
  }
  if (auto deleted = deleted_files::describe(pid, link, st, j)) {
    if (!deleted->ok()) return deleted->error();
    return j;
  }
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    j["type"] = S_ISREG(st.st_mode) ? "file" : "dir";
    j["size"] = st.st_size;
    return j;
  }
  if (S_ISCHR(st.st_mode) && !is_tty_path(link)) {
    j["type"] = "chardev";
    return j;
  }
  if (S_ISFIFO(st.st_mode)) {
    j["type"] = "fifo";
    if ((info.flags & O_ACCMODE) != O_WRONLY) {
      CKPT_TRY_ASSIGN(std::string data, peek_pipe(pid, fd));
      j["data"] = to_hex(data);
    }
    return j;
  }
  if (is_tty_path(link))
    return errorf(
        "pid {}: fd {} is the terminal {}; dump with --shell-job to let restore give it "
        "the terminal of its caller",
        pid, fd, link);
  return errorf("pid {}: fd {} is {}, which ckpt cannot save yet", pid, fd, link);
}

// Two fds may share one open file (dup, or inherited): kcmp tells, and restore shares it again.
// Only fds on the same inode can share, so only those are compared.
Status mark_shared_files(pid_t pid, json& fds) {
  for (size_t i = 0; i < fds.size(); ++i) {
    auto& f = fds[i];
    if (f["type"] == "inherit" || f["type"] == "pipe" || !f.contains("ino")) continue;
    for (size_t k = 0; k < i; ++k) {
      auto& g = fds[k];
      if (g.contains("dup_of") || g["type"] != f["type"] || g["ino"] != f["ino"] ||
          g["dev"] != f["dev"])
        continue;
      CKPT_TRY_ASSIGN(bool same,
                      proc::same_open_file(pid, g["fd"].get<int>(), pid, f["fd"].get<int>()));
      if (same) {
        f["dup_of"] = g["fd"];
        break;
      }
    }
  }
  return {};
}

// Locks are not re-taken by restore yet: a process holding one must not be dumped as if it held
// none. fdinfo lists the locks of each open file, whichever kind.
Status check_no_locks(pid_t pid, int fd) {
  CKPT_TRY_ASSIGN(std::string text, proc::read_proc_file(pid, fmt::format("fdinfo/{}", fd)));
  if (text.find("\nlock:") != std::string::npos || text.rfind("lock:", 0) == 0)
    return errorf("pid {}: fd {} holds a file lock, which ckpt cannot save yet", pid, fd);
  return {};
}

}  // namespace

Result<ScopedFd> borrow_fd(pid_t pid, int fd) {
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return sys_error(fmt::format("pidfd_open pid {}", pid));
  ScopedFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!copy) return sys_error(fmt::format("pidfd_getfd pid {} fd {}", pid, fd));
  return copy;
}

Status dump(DumpContext& ctx, bool shell_job) {
  CKPT_TRY_ASSIGN(auto fds, proc::list_numeric_dir(ctx.pid, "fd"));
  json out = json::array();
  for (int fd : fds) {
    CKPT_TRY_ASSIGN(json j, describe_fd(ctx.pid, fd, shell_job, ctx.tree->root));
    CKPT_TRY(check_no_locks(ctx.pid, fd));
    out.push_back(std::move(j));
  }
  CKPT_TRY(mark_shared_files(ctx.pid, out));
  json files{{"shell_job", shell_job}};
  CKPT_TRY(deleted_files::save(ctx, out, files));
  files["fds"] = std::move(out);
  ctx.image["files"] = std::move(files);
  return {};
}

Status check_before_restore(const json& image) {
  for (auto& f : image["files"]["fds"]) {
    if (f["type"] != "file") continue;
    std::string path = f["path"];
    struct stat st;
    if (::stat(path.c_str(), &st) < 0)
      return sys_error(fmt::format("restore fd {}: file {}", f["fd"].get<int>(), path));
    if (static_cast<uint64_t>(st.st_size) != f["size"].get<uint64_t>())
      return errorf("restore fd {}: file {} changed size since the dump ({} bytes, was {})",
                    f["fd"].get<int>(), path, st.st_size, f["size"].get<uint64_t>());
  }
  return {};
}

// `reopen` is the path to open instead of the image's (a recreated deleted file).
Result<ScopedFd> open_description(const json& f, const std::string& reopen) {
  int want = f.value("fd", -1), flags = f["flags"];
  if (f["type"] == "eventfd" || f["type"] == "signalfd" || f["type"] == "timerfd" ||
      f["type"] == "epoll") {
    CKPT_TRY_ASSIGN(int created, event_fds::create(f));
    return ScopedFd(created);
  }
  if (f["type"] == "tcp_listen") {
    CKPT_TRY_ASSIGN(int created, sockets::create(f));
    return ScopedFd(created);
  }
  std::string path = reopen.empty() ? f["path"].get<std::string>() : reopen;
  int open_flags = (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) | O_CLOEXEC;
  if (f["type"] == "fifo") open_flags |= O_NONBLOCK;  // a helper end exists: see open_fifos
  ScopedFd fd(::open(path.c_str(), open_flags));
  if (!fd) return sys_error(fmt::format("open {}", path));
  if (f["type"] == "fifo" && ::fcntl(fd.get(), F_SETFL, flags & (O_NONBLOCK | O_APPEND)) < 0)
    return sys_error(fmt::format("fcntl {}", path));
  if ((f["type"] == "file" || f["type"] == "deleted") &&
      ::lseek(fd.get(), static_cast<off_t>(f["pos"].get<uint64_t>()), SEEK_SET) < 0)
    return sys_error(fmt::format("seek {} for fd {}", path, want));
  return fd;
}

namespace {

// Every fd is created out of the way first (above every number of the image) and only then put
// at its number, so that a descriptor being set up never lands on a number another one needs.
class Placer {
 public:
  explicit Placer(int top) : top_(top) {}

  Result<int> park(int fd, std::string_view what) {
    if (fd < 0) return sys_error(fmt::format("open {}", what));
    if (fd > top_) return fd;
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, top_ + 1);
    int err = errno;
    ::close(fd);
    if (moved < 0) return sys_error(err, fmt::format("move fd for {}", what));
    return moved;
  }

  // Puts a parked fd at `want` (consuming it) with the image's close-on-exec bit.
  Status place(int parked, int want, int flags) {
    if (::dup3(parked, want, (flags & O_CLOEXEC) ? O_CLOEXEC : 0) < 0)
      return sys_error(fmt::format("dup3 to fd {}", want));
    ::close(parked);
    return {};
  }

 private:
  int top_;
};

Status open_one(Placer& placer, const json& f, const std::string& reopen = {}) {
  CKPT_TRY_ASSIGN(ScopedFd fd, open_description(f, reopen));
  CKPT_TRY_ASSIGN(int parked, placer.park(fd.release(), f["type"].get<std::string>()));
  return placer.place(parked, f["fd"], f["flags"]);
}

// A descriptor whose open file the restorer made once for every process that shares it.
Status place_shared(Placer& placer, const json& f, const HandedFds& handed) {
  std::string key = shared_files::handed_key(f);
  int from = handed.find(key);
  if (from < 0) return errorf("fd {}: the restorer did not hand over {}", f["fd"].get<int>(), key);
  int flags = f["flags"];
  CKPT_TRY_ASSIGN(int copy, placer.park(::fcntl(from, F_DUPFD_CLOEXEC, 0), key));
  if (f["type"] == "pipe" && ::fcntl(copy, F_SETFL, flags & (O_NONBLOCK | O_APPEND)) < 0)
    return sys_error("fcntl pipe");
  return placer.place(copy, f["fd"], flags);
}

// `read_end` holds the data; null when only write ends are left (what was in the pipe cannot be
// read by anyone).
Status open_pipe(Placer& placer, const json* read_end, const std::vector<const json*>& all_ends) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
  CKPT_TRY_ASSIGN(int r, placer.park(p[0], "pipe"));
  CKPT_TRY_ASSIGN(int w, placer.park(p[1], "pipe"));
  ScopedFd read_owner(r), write_owner(w);
  int size = read_end ? read_end->value("pipe_size", 0) : 0;
  if (size > 0) (void)::fcntl(w, F_SETPIPE_SZ, size);
  std::string data = read_end ? from_hex<std::string>((*read_end)["data"].get<std::string>()) : "";
  if (!data.empty() && ::write(w, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    return sys_error("refill pipe");
  for (auto* e : all_ends) {
    int flags = (*e)["flags"];
    int copy = ::fcntl((flags & O_ACCMODE) == O_RDONLY ? r : w, F_DUPFD_CLOEXEC, 0);
    CKPT_TRY_ASSIGN(copy, placer.park(copy, "pipe end"));
    if (::fcntl(copy, F_SETFL, flags & (O_NONBLOCK | O_APPEND)) < 0) return sys_error("fcntl pipe");
    CKPT_TRY(placer.place(copy, (*e)["fd"], flags));
  }
  return {};
}

// A FIFO keeps its data only while one of its ends is open: a helper end, open for reading and
// writing, holds it (and keeps opens of the real ends from blocking) until they exist.
Result<std::vector<ScopedFd>> open_fifo_helpers(Placer& placer, const json& fds) {
  std::vector<ScopedFd> helpers;
  std::map<std::string, bool> done;
  for (auto& f : fds) {
    if (f["type"] != "fifo" || f.contains("shared") || done[f["path"]]) continue;
    std::string path = f["path"];
    done[path] = true;
    CKPT_TRY_ASSIGN(int fd,
                    placer.park(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC), path));
    helpers.emplace_back(fd);
    std::string data = from_hex<std::string>(f.value("data", std::string()));
    if (!data.empty() && ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
      return sys_error(fmt::format("refill FIFO {}", path));
  }
  return helpers;
}

struct StdioBlock {
  int inherit[3] = {-1, -1, -1};
};

// Moves the standard streams to hand on and the fds to keep into one block above every fd in
// use, then closes everything below and above that block.
Result<StdioBlock> clear_fd_table(int top, std::vector<int>& keep) {
  CKPT_TRY_ASSIGN(auto open_now, proc::list_numeric_dir(getpid(), "fd"));
  int base = std::max(top + 1, open_now.empty() ? 0 : open_now.back() + 1);
  StdioBlock block;
  for (int i = 0; i < 3; ++i) {
    if (::fcntl(i, F_GETFD) < 0) continue;
    block.inherit[i] = base + i;
    if (::dup3(i, base + i, O_CLOEXEC) < 0) return sys_error("dup3 stdio");
  }
  for (size_t i = 0; i < keep.size(); ++i) {
    int to = base + 3 + static_cast<int>(i);
    if (::dup3(keep[i], to, O_CLOEXEC) < 0) return sys_error("dup3 kept fd");
    keep[i] = to;
  }
  ::close_range(0, static_cast<unsigned>(base - 1), 0);
  ::close_range(static_cast<unsigned>(base + 3 + static_cast<int>(keep.size())), ~0U, 0);
  return block;
}

Status open_inherited(Placer& placer, const json& f, const StdioBlock& block) {
  int from = block.inherit[f["from"].get<int>()];
  if (from < 0)
    return errorf("fd {}: the restorer has no fd {}", f["fd"].get<int>(), f["from"].get<int>());
  CKPT_TRY_ASSIGN(int copy, placer.park(::fcntl(from, F_DUPFD_CLOEXEC, 0), "stdio"));
  return placer.place(copy, f["fd"], f["flags"]);
}

// Each open file of a deleted inode is a new open of the one recreated inode, which the
// restorer handed over.
std::string reopen_path(const json& f, const HandedFds& handed) {
  int fd = handed.find(deleted_files::handed_key(f["deleted_id"].get<int>()));
  if (fd < 0) return "/nonexistent: deleted file lost";
  return fmt::format("/proc/self/fd/{}", fd);
}

}  // namespace

Status restore_in_puppet(const json& image, bool shell_job, HandedFds& handed) {
  const json& fds = image["files"]["fds"];
  if (image["files"]["shell_job"].get<bool>() && !shell_job)
    return make_error("the image was dumped with --shell-job: restore it with --shell-job");
  int top = 2;
  for (auto& f : fds) top = std::max(top, f["fd"].get<int>());
  CKPT_TRY_ASSIGN(StdioBlock block, clear_fd_table(top, handed.fds));
  Placer placer(top);
  CKPT_TRY_ASSIGN(auto fifo_helpers, open_fifo_helpers(placer, fds));
  std::map<uint64_t, std::vector<const json*>> pipes;
  for (auto& f : fds) {
    if (f.contains("dup_of")) continue;
    if (f.contains("shared"))
      CKPT_TRY(place_shared(placer, f, handed));
    else if (f["type"] == "pipe")
      pipes[f["ino"].get<uint64_t>()].push_back(&f);
    else if (f["type"] == "inherit")
      CKPT_TRY(open_inherited(placer, f, block));
    else if (f["type"] == "deleted")
      CKPT_TRY(open_one(placer, f, reopen_path(f, handed)));
    else
      CKPT_TRY(open_one(placer, f));
  }
  for (auto& [ino, ends] : pipes) {
    auto reader =
        std::find_if(ends.begin(), ends.end(), [](const json* e) { return e->contains("data"); });
    CKPT_TRY(open_pipe(placer, reader == ends.end() ? nullptr : *reader, ends));
  }
  // Descriptors that shared an open file (dup, dup2, fork) share it again.
  for (auto& f : fds) {
    if (!f.contains("dup_of")) continue;
    int flags = f["flags"];
    if (::dup3(f["dup_of"].get<int>(), f["fd"].get<int>(), (flags & O_CLOEXEC) ? O_CLOEXEC : 0) < 0)
      return sys_error(
          fmt::format("dup3 fd {} to fd {}", f["dup_of"].get<int>(), f["fd"].get<int>()));
  }
  for (int fd : block.inherit)
    if (fd >= 0) ::close(fd);
  return event_fds::register_epoll_targets(fds);
}

}  // namespace ckpt::files
