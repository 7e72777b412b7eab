// `ckpt run` costs, measured through the command like a user sees them:
//   1. crash to running again for a 64 MiB process (the supervisor's own "recovered in" figure),
//   2. frozen time per periodic checkpoint of that process,
//   3. overhead of running a syscall-heavy program (dd with 1-byte blocks) under `ckpt run`
//      between checkpoints, against running it directly.
// Usage: supervisor_bench [path/to/ckpt]  (default: ../bin/ckpt next to this binary)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

pid_t spawn(const std::vector<std::string>& argv, const fs::path& err) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* e = fopen(err.c_str(), "w");
    dup2(fileno(e), 2);
    close_range(3, ~0u, 0);
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  return pid;
}

double run_wall(const std::vector<std::string>& argv, const fs::path& err) {
  auto t = Clock::now();
  pid_t p = spawn(argv, err);
  waitpid(p, nullptr, 0);
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string slurp(const fs::path& p) {
  std::stringstream s;
  s << std::ifstream(p).rdbuf();
  return s.str();
}

std::vector<double> grab(const std::string& text, const std::string& re) {
  std::vector<double> out;
  std::regex r(re);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), r); it != std::sregex_iterator();
       ++it)
    out.push_back(std::stod((*it)[1]));
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  fs::path ckpt = argc > 1
                      ? fs::path(argv[1])
                      : fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "bin/ckpt";
  char tmpl[] = "/tmp/ckpt-sv-bench-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  auto err = dir / "err";

  // 1 + 2: a 64 MiB process checkpointed every 0.5 s and killed 5 times.
  pid_t sv =
      spawn({ckpt, "run", "--interval", "0.5", "--min-uptime", "0", "--dir", dir / "s", "--",
             "/usr/bin/python3", "-c",
             "import time\nb = bytearray(b'x' * (64 << 20))\nwhile True: time.sleep(0.01)\n"},
            err);
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    auto j = nlohmann::json::parse(slurp(dir / "s/run.json"), nullptr, false);
    if (!j.is_discarded() && j.value("child_pid", 0) > 0) kill(j.value("child_pid", 0), SIGKILL);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(sv, SIGTERM);
  waitpid(sv, nullptr, 0);
  std::string log = slurp(err);
  auto rec = grab(log, "recovered from generation \\S+ in ([0-9.]+) ms");
  auto frozen = grab(log, "frozen ([0-9.]+) ms");
  std::printf("64 MiB process: crash to running again: mean %.1f ms over %zu recoveries\n",
              mean(rec), rec.size());
  std::printf("64 MiB process: frozen per periodic checkpoint: mean %.1f ms over %zu checkpoints\n",
              mean(frozen), frozen.size());

  // 3: syscall-heavy program between checkpoints (interval 0: none happen).
  std::vector<std::string> dd = {"dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=3000000"};
  double direct = 0, supervised = 0;
  for (int i = 0; i < 3; ++i) {
    direct += run_wall(dd, dir / "dd.err");
    std::vector<std::string> under = {ckpt, "run",   "-q",      "--interval",
                                      "0",  "--dir", dir / "d", "--"};
    under.insert(under.end(), dd.begin(), dd.end());
    supervised += run_wall(under, dir / "dd.err");
  }
  std::printf(
      "syscall-heavy dd (3M read+write): direct %.3f s, under ckpt run %.3f s, ratio %.3f\n",
      direct / 3, supervised / 3, supervised / direct);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
