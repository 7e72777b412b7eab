#pragma once
// Running the `ckpt` binary from the CLI tests: in a chosen directory, with a deadline, output
// captured.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace ckpt::cli::test {

using TempDir = ckpt::test_support::TempDir;

struct Run {
  int exit_code = -1;
  std::string out, err;
  bool timed_out = false;
  std::string describe() const {
    return "exit " + std::to_string(exit_code) + (timed_out ? " (timed out)" : "") +
           "\nstdout: " + out + "\nstderr: " + err;
  }
};

// Runs `ckpt ARGS...` in `cwd` (stdin /dev/null), killing it after `timeout_s` seconds.
inline Run run_ckpt(const std::vector<std::string>& args, const std::filesystem::path& cwd = "/",
                    int timeout_s = 60) {
  TempDir io;
  auto out = io.path() / "out", err = io.path() / "err";
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    int in = ::open("/dev/null", O_RDONLY);
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(in, 0);
    dup2(o, 1);
    dup2(e, 2);
    if (chdir(cwd.c_str()) != 0) _exit(126);
    close_range(3, ~0U, 0);  // ckpt starts with stdio only, as from a shell
    std::vector<char*> argv{const_cast<char*>(CKPT_CLI_PATH)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  Run r;
  int status = 0;
  for (int waited_ms = 0;; waited_ms += 10) {
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    if (waited_ms >= timeout_s * 1000) {
      r.timed_out = true;
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(10 * 1000);
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::stringstream so, se;
  so << std::ifstream(out).rdbuf();
  se << std::ifstream(err).rdbuf();
  r.out = so.str();
  r.err = se.str();
  return r;
}

inline size_t lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace ckpt::cli::test
