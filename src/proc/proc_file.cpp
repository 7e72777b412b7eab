#include "proc/proc_file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <memory>

#include "common/scoped_fd.hpp"

namespace ckpt::proc {

std::string proc_path(pid_t pid, std::string_view rel) {
  return fmt::format("/proc/{}/{}", pid, rel);
}

// ENOENT under /proc/PID usually means the process exited between two reads.
static int refine_errno(pid_t pid, int err) {
  if (err != ENOENT) return err;
  std::string dir = fmt::format("/proc/{}", pid);
  if (::access(dir.c_str(), F_OK) != 0 && errno == ENOENT) return ESRCH;
  return err;
}

Error proc_error(pid_t pid, std::string_view rel, std::string_view op, int err) {
  return sys_error(refine_errno(pid, err), fmt::format("{} {}", op, proc_path(pid, rel)));
}

Error parse_error(pid_t pid, std::string_view rel, const Error& e) {
  return e.wrap(fmt::format("parse {}", proc_path(pid, rel)));
}

Result<std::string> read_text_file(const std::string& path, int* err) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    *err = errno;
    return sys_error(fmt::format("read {}", path));
  }
  // /proc files hand out a page or so per read: growing the string by a large zeroed chunk per
  // read would cost more than the read (first touch is slow on some machines).
  std::string out;
  std::array<char, 65536> chunk;
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = errno;
      return sys_error(fmt::format("read {}", path));
    }
    if (n == 0) return out;
    out.append(chunk.data(), static_cast<size_t>(n));
  }
}

Result<std::string> read_proc_file(pid_t pid, std::string_view rel) {
  int err = 0;
  auto r = read_text_file(proc_path(pid, rel), &err);
  if (!r) return proc_error(pid, rel, "read", err);
  return r;
}

Result<std::string> read_proc_link(pid_t pid, std::string_view rel) {
  std::string path = proc_path(pid, rel);
  // Links to deleted files or sockets can be longer than PATH_MAX only in theory; grow anyway.
  for (size_t size = PATH_MAX;; size *= 2) {
    std::string buf(size, '\0');
    ssize_t n = ::readlink(path.c_str(), buf.data(), size);
    if (n < 0) return proc_error(pid, rel, "readlink", errno);
    if (static_cast<size_t>(n) < size) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
  }
}

Result<std::vector<int>> list_numeric_dir(pid_t pid, std::string_view rel) {
  std::string path = proc_path(pid, rel);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
  if (!dir) return proc_error(pid, rel, "list", errno);
  std::vector<int> out;
  errno = 0;
  while (dirent* e = ::readdir(dir.get())) {
    if (auto v = parse_u64(e->d_name); v && *v <= INT_MAX) out.push_back(static_cast<int>(*v));
  }
  if (errno != 0) return proc_error(pid, rel, "list", errno);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<uint64_t> parse_u64(std::string_view s, int base) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> parse_i64(std::string_view s, int base) {
  int64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view next_token(std::string_view& s) {
  size_t b = 0;
  while (b < s.size() && is_space(s[b])) ++b;
  size_t e = b;
  while (e < s.size() && !is_space(s[e])) ++e;
  std::string_view tok = s.substr(b, e - b);
  s.remove_prefix(e);
  return tok;
}

bool next_line(std::string_view& text, std::string_view& line) {
  if (text.empty()) return false;
  size_t nl = text.find('\n');
  if (nl == std::string_view::npos) {
    line = text;
    text = {};
  } else {
    line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
  }
  return true;
}

bool split_key_value(std::string_view line, std::string_view& key, std::string_view& value) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  key = line.substr(0, colon);
  value = trim(line.substr(colon + 1));
  return true;
}

Status write_proc_text(const std::string& path, std::string_view text) {
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sys_error(fmt::format("open {} to write", path));
  ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size()))
    return sys_error(n < 0 ? errno : EIO, fmt::format("write '{}' to {}", text, path));
  return {};
}

Status mem_file_io(pid_t tid, uint64_t addr, void* buf, size_t len, bool write) {
  if (!write) {
    CKPT_TRY_ASSIGN(MemFile mem, MemFile::open(tid));
    return mem.read(addr, buf, len);
  }
  std::string path = proc_path(tid, "mem");
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return proc_error(tid, "mem", "open", errno);
  auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd.get(), p, len, static_cast<off_t>(addr));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return sys_error(n == 0 ? EIO : errno,
                       fmt::format("write {:#x} of {} in {}", addr, len, path));
    p += n;
    addr += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return {};
}

Result<MemFile> MemFile::open(pid_t pid) {
  std::string path = proc_path(pid, "mem");
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return proc_error(pid, "mem", "open", errno);
  return MemFile(pid, std::move(fd));
}

Status MemFile::read(uint64_t addr, void* buf, size_t len) const {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd_.get(), p, len, static_cast<off_t>(addr));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return sys_error(n == 0 ? EIO : errno,
                       fmt::format("read {:#x} of {} in {}", addr, len, proc_path(pid_, "mem")));
    p += n;
    addr += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return {};
}

}  // namespace ckpt::proc
