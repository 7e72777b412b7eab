#pragma once
// Reading files under /proc/PID and the small text scanners the parsers share. Every reader
// names pid and file in its errors ("read /proc/42/maps: No such process"), and every parser
// takes the text itself so that tests can feed it fixed strings.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::proc {

// "/proc/42/maps" for (42, "maps").
std::string proc_path(pid_t pid, std::string_view rel);

// Reads a whole /proc file (their size is unknown until read). A missing file whose process
// is gone reports ESRCH rather than ENOENT, since that is what the caller needs to know.
Result<std::string> read_proc_file(pid_t pid, std::string_view rel);
// Reads any file whose size stat() does not know (/proc/locks); sets *err to the errno.
Result<std::string> read_text_file(const std::string& path, int* err);
Result<std::string> read_proc_link(pid_t pid, std::string_view rel);
// Writes `text` to a kernel knob (/proc/sys/..., /proc/PID/oom_score_adj, uid_map) in one
// write(2), which is how the kernel takes them; the error says "write 'TEXT' to PATH: ...".
Status write_proc_text(const std::string& path, std::string_view text);
// Reads or writes `len` bytes at `addr` of thread or process `tid` through /proc/TID/mem, which
// reaches pages process_vm_* cannot (no read or write permission for the thread).
Status mem_file_io(pid_t tid, uint64_t addr, void* buf, size_t len, bool write);

// /proc/PID/mem of one process, open for reading. Bulk copies of a process's pages go through it
// rather than process_vm_readv, which pins what it reads (FOLL_PIN): the kernel first gives a
// pinned page that is still shared copy-on-write (with a forked child, or a dump's snapshot) a
// copy of its own, so a dump would undo the sharing of everything it read. Measured here: 64 MiB
// a process shared with its child, all copied by one process_vm_readv pass over the child, none
// through /proc/PID/mem, which was as fast (17-42 ms against 17-64 ms).
class MemFile {
 public:
  static Result<MemFile> open(pid_t pid);
  Status read(uint64_t addr, void* buf, size_t len) const;
  pid_t pid() const { return pid_; }

 private:
  MemFile(pid_t pid, ScopedFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  ScopedFd fd_;
};
// Numeric entries of a /proc directory (/proc/PID/task, /proc/PID/fd), sorted ascending.
Result<std::vector<int>> list_numeric_dir(pid_t pid, std::string_view rel);

// The error for `op` ("read", "open"...) on /proc/PID/rel that failed with `err`.
Error proc_error(pid_t pid, std::string_view rel, std::string_view op, int err);
// Wraps a parse error from text parsers: "parse /proc/42/maps: line 3: ...".
Error parse_error(pid_t pid, std::string_view rel, const Error& e);

// Text scanning. All of these accept exactly the number and nothing else.
std::optional<uint64_t> parse_u64(std::string_view s, int base = 10);
std::optional<int64_t> parse_i64(std::string_view s, int base = 10);
std::string_view trim(std::string_view s);
// Pops the next whitespace-separated token from `s` (empty when none is left).
std::string_view next_token(std::string_view& s);
// Pops the next line (without '\n') from `text`; returns false at the end.
bool next_line(std::string_view& text, std::string_view& line);
// Splits "Key:\tvalue" into key and trimmed value; false when there is no ':'.
bool split_key_value(std::string_view line, std::string_view& key, std::string_view& value);

}  // namespace ckpt::proc
