#include "resources/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <map>

#include "common/fs_util.hpp"
#include "common/scoped_fd.hpp"
#include "proc/proc_file.hpp"

namespace ckpt::files {
namespace {

struct FdInfoBasic {
  uint64_t pos = 0;
  int flags = 0;
};

Result<FdInfoBasic> read_fdinfo_basic(pid_t pid, int fd) {
  CKPT_TRY_ASSIGN(std::string text, proc::read_proc_file(pid, fmt::format("fdinfo/{}", fd)));
  FdInfoBasic info;
  std::string_view rest = text, line;
  while (proc::next_line(rest, line)) {
    std::string_view key, value;
    if (!proc::split_key_value(line, key, value)) continue;
    if (key == "pos") info.pos = proc::parse_u64(value).value_or(0);
    if (key == "flags") info.flags = static_cast<int>(proc::parse_u64(value, 8).value_or(0));
  }
  return info;
}

bool is_tty_path(const std::string& p) {
  return p.rfind("/dev/pts/", 0) == 0 || p.rfind("/dev/tty", 0) == 0 || p == "/dev/console";
}

std::string to_hex(const std::string& d) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (unsigned char b : d) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

std::string from_hex(const std::string& s) {
  std::string d(s.size() / 2, '\0');
  auto nib = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i < d.size(); ++i) d[i] = char(nib(s[2 * i]) << 4 | nib(s[2 * i + 1]));
  return d;
}

// Reads what a pipe holds without taking it: tee() into a pipe of our own.
Result<std::string> peek_pipe(pid_t pid, int fd) {
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return sys_error(fmt::format("pidfd_open pid {}", pid));
  ScopedFd src(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!src) return sys_error(fmt::format("pidfd_getfd pid {} fd {}", pid, fd));
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

Result<json> describe_fd(pid_t pid, int fd, bool shell_job) {
  CKPT_TRY_ASSIGN(std::string link, proc::read_proc_link(pid, fmt::format("fd/{}", fd)));
  CKPT_TRY_ASSIGN(FdInfoBasic info, read_fdinfo_basic(pid, fd));
  json j{{"fd", fd}, {"flags", info.flags}, {"pos", info.pos}, {"path", link}};
  if (shell_job && (fd <= 2 || is_tty_path(link))) {
    j["type"] = "inherit";
    j["from"] = fd <= 2 ? fd : 0;
    return j;
  }
  struct stat st;
  std::string fd_path = proc::proc_path(pid, fmt::format("fd/{}", fd));
  if (::stat(fd_path.c_str(), &st) < 0)
    return sys_error(fmt::format("stat {} ({})", fd_path, link));
  if (link.rfind("pipe:", 0) == 0) {
    j["type"] = "pipe";
    j["ino"] = st.st_ino;
    if ((info.flags & O_ACCMODE) == O_RDONLY) {
      CKPT_TRY_ASSIGN(std::string data, peek_pipe(pid, fd));
      j["data"] = to_hex(data);
      CKPT_TRY_ASSIGN(ScopedFd self, open_file(fd_path, O_RDONLY | O_NONBLOCK));
      j["pipe_size"] = ::fcntl(self.get(), F_GETPIPE_SZ);
    }
    return j;
  }
  if (link.size() > 10 && link.compare(link.size() - 10, 10, " (deleted)") == 0)
    return errorf("pid {}: fd {} is the deleted file {}, which ckpt cannot save yet", pid, fd,
                  link);
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
    return j;
  }
  if (is_tty_path(link))
    return errorf(
        "pid {}: fd {} is the terminal {}; dump with --shell-job to let restore give it "
        "the terminal of its caller",
        pid, fd, link);
  return errorf("pid {}: fd {} is {}, which ckpt cannot save yet", pid, fd, link);
}

// Pipes need both ends in the process: data in flight is all we can carry.
Status check_pipes(pid_t pid, const json& fds) {
  std::map<uint64_t, int> ends;  // inode -> bit 1 read end, bit 2 write end
  for (auto& f : fds)
    if (f["type"] == "pipe")
      ends[f["ino"]] |= (f["flags"].get<int>() & O_ACCMODE) == O_RDONLY ? 1 : 2;
  for (auto& [ino, mask] : ends)
    if (mask != 3)
      return errorf(
          "pid {}: pipe:[{}] has its other end outside the process, which ckpt cannot "
          "save yet",
          pid, ino);
  return {};
}

}  // namespace

Status dump(DumpContext& ctx, bool shell_job) {
  CKPT_TRY_ASSIGN(auto fds, proc::list_numeric_dir(ctx.pid, "fd"));
  json out = json::array();
  for (int fd : fds) {
    CKPT_TRY_ASSIGN(json j, describe_fd(ctx.pid, fd, shell_job));
    out.push_back(std::move(j));
  }
  CKPT_TRY(check_pipes(ctx.pid, out));
  ctx.image["files"] = {{"fds", std::move(out)}, {"shell_job", shell_job}};
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

namespace {

Status place_fd(int got, int want, int flags) {
  if (got != want) {
    if (::dup3(got, want, (flags & O_CLOEXEC) ? O_CLOEXEC : 0) < 0)
      return sys_error(fmt::format("dup3 to fd {}", want));
    ::close(got);
  } else if (!(flags & O_CLOEXEC)) {
    ::fcntl(want, F_SETFD, 0);
  }
  return {};
}

Status open_one(const json& f) {
  int want = f["fd"], flags = f["flags"];
  std::string path = f["path"];
  int open_flags = (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) | O_CLOEXEC;
  int got = ::open(path.c_str(), open_flags);
  if (got < 0) return sys_error(fmt::format("open {} for fd {}", path, want));
  if (f["type"] == "file" &&
      ::lseek(got, static_cast<off_t>(f["pos"].get<uint64_t>()), SEEK_SET) < 0)
    return sys_error(fmt::format("seek {} for fd {}", path, want));
  return place_fd(got, want, flags);
}

Status open_pipe(const json& read_end, const std::vector<const json*>& all_ends) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("pipe2");
  int size = read_end.value("pipe_size", 0);
  if (size > 0) (void)::fcntl(p[1], F_SETPIPE_SZ, size);
  std::string data = from_hex(read_end["data"]);
  if (!data.empty() && ::write(p[1], data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    return sys_error("refill pipe");
  for (auto* e : all_ends) {
    int flags = (*e)["flags"];
    int src = (flags & O_ACCMODE) == O_RDONLY ? p[0] : p[1];
    int copy = ::fcntl(src, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return sys_error("dup pipe end");
    if (::fcntl(copy, F_SETFL, flags & (O_NONBLOCK | O_APPEND)) < 0) return sys_error("fcntl pipe");
    CKPT_TRY(place_fd(copy, (*e)["fd"], flags));
  }
  ::close(p[0]);
  ::close(p[1]);
  return {};
}

}  // namespace

Status restore_in_puppet(const json& image, bool shell_job, std::vector<int>& keep) {
  const json& fds = image["files"]["fds"];
  if (image["files"]["shell_job"].get<bool>() && !shell_job)
    return make_error("the image was dumped with --shell-job: restore it with --shell-job");
  int top = 2;
  for (auto& f : fds) top = std::max(top, f["fd"].get<int>());
  // Move the standard streams to hand on and the fds to keep into one block above every fd in
  // use, then close everything below and above that block.
  CKPT_TRY_ASSIGN(auto open_now, proc::list_numeric_dir(getpid(), "fd"));
  int base = std::max(top + 1, open_now.empty() ? 0 : open_now.back() + 1);
  int inherit[3];
  for (int i = 0; i < 3; ++i) {
    inherit[i] = ::fcntl(i, F_GETFD) < 0 ? -1 : base + i;
    if (inherit[i] >= 0 && ::dup3(i, inherit[i], O_CLOEXEC) < 0) return sys_error("dup3 stdio");
  }
  for (size_t i = 0; i < keep.size(); ++i) {
    int to = base + 3 + static_cast<int>(i);
    if (::dup3(keep[i], to, O_CLOEXEC) < 0) return sys_error("dup3 kept fd");
    keep[i] = to;
  }
  ::close_range(0, static_cast<unsigned>(base - 1), 0);
  ::close_range(static_cast<unsigned>(base + 3 + static_cast<int>(keep.size())), ~0U, 0);
  std::map<uint64_t, std::vector<const json*>> pipes;
  for (auto& f : fds) {
    if (f["type"] == "pipe") {
      pipes[f["ino"]].push_back(&f);
    } else if (f["type"] == "inherit") {
      int from = inherit[f["from"].get<int>()];
      if (from < 0)
        return errorf("fd {}: the restorer has no fd {}", f["fd"].get<int>(), f["from"].get<int>());
      int copy = ::fcntl(from, F_DUPFD_CLOEXEC, 0);
      CKPT_TRY(place_fd(copy, f["fd"], f["flags"]));
    } else {
      CKPT_TRY(open_one(f));
    }
  }
  for (auto& [ino, ends] : pipes) {
    auto reader =
        std::find_if(ends.begin(), ends.end(), [](const json* e) { return e->contains("data"); });
    CKPT_TRY(open_pipe(**reader, ends));
  }
  for (int fd : inherit)
    if (fd >= 0) ::close(fd);
  return {};
}

}  // namespace ckpt::files
