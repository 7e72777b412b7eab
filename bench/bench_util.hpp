#pragma once
// What the engine benchmarks share: ending on an error, and a target process that runs a copy of
// the benchmark binary with only the fds the engine accepts.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace ckpt::bench {

// Prints "<program>: msg" and exits 1, killing and reaping `kill_first` before.
[[noreturn]] inline void die(const std::string& msg, pid_t kill_first = 0) {
  if (kill_first > 0) {
    ::kill(kill_first, SIGKILL);
    ::waitpid(kill_first, nullptr, 0);
  }
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg.c_str());
  std::exit(1);
}

template <typename T>
T check(Result<T> r, pid_t kill_first = 0) {
  if (!r.ok()) die(r.error().message, kill_first);
  return std::move(*r);
}

inline void check(const Status& s, pid_t kill_first = 0) {
  if (!s.ok()) die(s.error().message, kill_first);
}

// A copy of this binary under another name, for the targets to run: the kernel refuses to set
// a process's exe (PR_SET_MM_MAP, EBUSY) while its old exe file is still mapped, and the
// puppet's old exe is this binary.
inline std::filesystem::path make_target_exe() {
  namespace fs = std::filesystem;
  fs::path self = fs::read_symlink("/proc/self/exe");
  fs::path copy =
      self.parent_path() / fmt::format(".{}-target-{}", program_invocation_short_name, ::getpid());
  std::error_code ec;
  fs::create_hard_link(self, copy, ec);
  if (ec) fs::copy_file(self, copy, fs::copy_options::overwrite_existing, ec);
  if (ec) die(fmt::format("copy {} to {}: {}", self.string(), copy.string(), ec.message()));
  return copy;
}

// Starts `exe args...` with /dev/null as fds 0-2 and fd 3 the write end of a pipe, nothing else
// (the engine refuses pipes leading out of the process); it dies with us. Returns its pid and
// the read end of that pipe, on which the target reports that it is ready.
inline pid_t spawn_target(const std::filesystem::path& exe, const std::vector<std::string>& args,
                          int& report_fd) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) die("pipe2 failed");
  pid_t pid = ::fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(p[1], 3);
    ::fcntl(3, F_SETFD, 0);
    for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
    ::close_range(4, ~0U, 0);
    std::vector<char*> argv{const_cast<char*>(program_invocation_short_name)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(p[1]);
  report_fd = p[0];
  return pid;
}

}  // namespace ckpt::bench
