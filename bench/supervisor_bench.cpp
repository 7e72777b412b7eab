// `ckpt run` costs, measured through the command like a user sees them:
//   1. crash to running again for a 64 MiB process (the supervisor's own "recovered in" figure),
//   2. frozen time per periodic checkpoint of that process,
//   3. overhead of running a syscall-heavy program (dd with 1-byte blocks) under `ckpt run`
//      between checkpoints, against running it directly.
//   4. crash to running again for a 1 GiB process, eager and with --lazy, beside the machine's
//      limit for an eager restore (reading the image and populating the memory, same run).
// Usage: supervisor_bench [path/to/ckpt]  (default: ../bin/ckpt next to this binary)
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
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

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

double min_of(const std::vector<double>& v) {
  double m = v.empty() ? 0 : v[0];
  for (double x : v) m = std::min(m, x);
  return m;
}

nlohmann::json run_json(const fs::path& store) {
  auto j = nlohmann::json::parse(slurp(store / "run.json"), nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

template <typename F>
bool wait_for(F pred, int seconds = 120) {
  auto end = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

struct Recoveries {
  std::vector<double> running;   // crash to running again (ms)
  std::vector<double> complete;  // --lazy: restore to all memory in (ms)
  std::string generation;
};

// A 1 GiB python3 program under `ckpt run [--lazy]`, checkpointed once on request, then killed
// `kills` times; each recovery comes from that checkpoint.
Recoveries crash_1g(const fs::path& ckpt, const fs::path& dir, bool lazy, int kills) {
  auto store = dir / (lazy ? "lazy" : "eager");
  auto ready = dir / (lazy ? "lazy.ready" : "eager.ready");
  auto err = dir / (lazy ? "lazy.err" : "eager.err");
  std::vector<std::string> argv = {ckpt,           "run", "--interval", "0",
                                   "--min-uptime", "0",   "--dir",      store};
  if (lazy) argv.push_back("--lazy");
  for (std::string a : {"--", "/usr/bin/python3", "-c",
                        "import sys, time\nb = bytearray(b'x') * (1 << 30)\n"
                        "open(sys.argv[1], 'w').close()\nwhile True: time.sleep(0.01)\n"})
    argv.push_back(a);
  argv.push_back(ready);
  pid_t sv = spawn(argv, err);
  Recoveries r;
  wait_for([&] { return fs::exists(ready); });
  kill(sv, SIGUSR1);
  wait_for([&] { return run_json(store).value("requests_served", 0) >= 1; });
  r.generation = run_json(store).value("last_generation", "");
  for (int i = 0; i < kills; ++i) {
    pid_t child = run_json(store).value("child_pid", 0);
    if (child <= 0) {  // kill(0) would signal this bench's own process group
      std::fprintf(stderr, "supervisor_bench: no program runs under the supervisor\n");
      kill(sv, SIGKILL);
      std::exit(1);
    }
    kill(child, SIGKILL);
    std::string marker = lazy ? "memory of pid" : "recovered from";
    wait_for([&] { return occurrences(slurp(err), marker) >= size_t(i) + 1; });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  kill(sv, SIGTERM);
  waitpid(sv, nullptr, 0);
  std::string log = slurp(err);
  r.running = grab(log, "recovered from generation \\S+ in ([0-9.]+) ms");
  r.complete = grab(log, "memory of pid [0-9]+ complete in ([0-9.]+) ms");
  return r;
}

// The least an eager restore of `data` must do: read it (into a reused buffer) and populate as
// much fresh memory. Milliseconds, each.
std::pair<double, double> eager_limit(const fs::path& data) {
  constexpr size_t kChunk = 1 << 20;
  std::unique_ptr<char[]> buf(new char[kChunk]);
  int fd = open(data.c_str(), O_RDONLY);
  auto t = Clock::now();
  for (off_t at = 0; fd >= 0 && pread(fd, buf.get(), kChunk, at) > 0; at += kChunk) {
  }
  double read_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  if (fd >= 0) close(fd);
  size_t len = fs::file_size(data);
  void* mem = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  t = Clock::now();
  madvise(mem, len, MADV_POPULATE_WRITE);
  double populate_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  munmap(mem, len);
  return {read_ms, populate_ms};
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
  // 4: 1 GiB, eager against lazy, in the same run.
  auto eager = crash_1g(ckpt, dir, false, 3);
  auto lazy = crash_1g(ckpt, dir, true, 3);
  auto [read_ms, populate_ms] = eager_limit(dir / "eager" / eager.generation / "data");
  std::printf("1 GiB process: crash to running again, eager: mean %.1f ms, min %.1f ms (%zu)\n",
              mean(eager.running), min_of(eager.running), eager.running.size());
  std::printf(
      "1 GiB process: crash to running again, --lazy: mean %.1f ms, min %.1f ms (%zu); all memory "
      "in %.1f ms later (mean)\n",
      mean(lazy.running), min_of(lazy.running), lazy.running.size(), mean(lazy.complete));
  std::printf(
      "machine's limit for an eager restore of that image: read %.1f ms + populate %.1f ms\n",
      read_ms, populate_ms);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
