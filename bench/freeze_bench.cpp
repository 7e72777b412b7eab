// How long a --leave-running dump keeps a process stopped ("frozen") and takes in all ("total"),
// with the copy-on-write snapshot (dump/snapshot.hpp), with a pre-copy (dump/pre_copy.hpp: the
// memory copied while the process runs, the freeze reads what it wrote meanwhile) and without
// either (every page copied while the process is stopped), next to the machine's limit for a
// consistent snapshot: fork() of the same process, measured by the process itself in the same
// run. The target writes nothing after it reported: a pre-copy's best case, an idle program's.
//
//   build/bench/freeze_bench [--dir DIR] [--runs N] [TARGET...]
//
// TARGET is MIB (one thread), MIBxT (T threads) or "python3" (an idle python3 interpreter);
// default: /dev/shm, 5, 64 1024 64x2 python3. The target is this binary in --target mode (or
// python3 running a short script): it touches MIB MiB with distinct words, times fork() of
// itself (the child exits at once), reports, and sleeps until killed.
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "dump/dump.hpp"
#include "image/store.hpp"

namespace fs = std::filesystem;
using namespace ckpt;
using bench::check;
using bench::die;
using Clock = std::chrono::steady_clock;

namespace {

// The python3 target: what its own os.fork() costs, then it waits, like target_main().
constexpr const char* kPythonTarget = R"(
import os, signal, time
best = None
for _ in range(5):
    t = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    ns = time.monotonic_ns() - t
    os.waitpid(pid, 0)
    best = ns if best is None else min(best, ns)
os.write(3, best.to_bytes(8, "little"))
os.close(3)
while True:
    signal.pause()
)";

int target_main(uint64_t mib, int threads) {
  for (int i = 1; i < threads; ++i)
    std::thread([] {
      for (;;) ::pause();
    }).detach();
  size_t len = mib << 20;
  auto* words = static_cast<uint64_t*>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (words == MAP_FAILED) return 2;
  ::madvise(words, len, MADV_POPULATE_WRITE);
  for (size_t i = 0; i < len / 8; ++i) words[i] = i * 0x9e3779b97f4a7c15ull;
  int64_t best = INT64_MAX;
  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int64_t ns = (Clock::now() - start).count();
    ::waitpid(child, nullptr, 0);
    best = std::min(best, ns);
  }
  if (::write(3, &best, sizeof best) != sizeof best) return 2;
  ::close(3);
  for (;;) ::pause();
}

double ms(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double, std::milli>(ns).count();
}

struct Figures {
  std::vector<double> frozen, total;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double least(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

enum class Mode { snapshot, pre_copy, stopped };

Figures dump_runs(pid_t pid, const fs::path& dir, int runs, Mode mode) {
  Figures f;
  for (int i = 0; i < runs; ++i) {
    fs::path store_dir = dir / fmt::format("freeze-bench-{}-{}", ::getpid(), i);
    auto store = check(image::Store::open(store_dir, {.create = true}), pid);
    DumpOptions opts;
    opts.pid = pid;
    opts.leave_running = true;
    opts.snapshot = mode != Mode::stopped;
    opts.pre_copy = mode == Mode::pre_copy;
    auto r = check(dump_process(store, opts), pid);
    f.frozen.push_back(ms(r.frozen));
    f.total.push_back(ms(r.total));
    std::error_code ec;
    fs::remove_all(store_dir, ec);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--target")
    return target_main(std::stoull(argv[2]), std::atoi(argv[3]));
  fs::path dir = "/dev/shm";
  int runs = 5;
  std::vector<std::string> targets;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--runs" && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
    else
      targets.push_back(a);
  }
  if (targets.empty()) targets = {"64", "1024", "64x2", "python3"};
  fs::path exe = bench::make_target_exe();
  double load[3] = {};
  (void)::getloadavg(load, 3);
  std::printf("machine: %ld cores online, load average %.1f %.1f %.1f\n",
              ::sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
  std::printf("store in %s, %d dumps each (min / median ms); fork = the target's own fork()\n",
              dir.c_str(), runs);
  std::printf("%8s %9s | %17s %17s | %17s %17s | %17s %17s | %s\n", "target", "fork ms",
              "frozen (snapshot)", "total (snapshot)", "frozen (pre-copy)", "total (pre-copy)",
              "frozen (stopped)", "total (stopped)", "frozen/fork snap, pre");
  for (const std::string& target : targets) {
    int report = -1;
    pid_t pid = 0;
    if (target == "python3") {
      pid = bench::spawn_target("/usr/bin/python3", {"-c", kPythonTarget}, report);
    } else {
      size_t x = target.find('x');
      std::string threads = x == std::string::npos ? "1" : target.substr(x + 1);
      pid = bench::spawn_target(exe, {"--target", target.substr(0, x), threads}, report);
    }
    int64_t fork_ns = 0;
    if (::read(report, &fork_ns, sizeof fork_ns) != sizeof fork_ns)
      die("the target did not start", pid);
    ::close(report);
    Figures snap = dump_runs(pid, dir, runs, Mode::snapshot);
    Figures pre = dump_runs(pid, dir, runs, Mode::pre_copy);
    Figures stopped = dump_runs(pid, dir, runs, Mode::stopped);
    double fork_ms = fork_ns / 1e6;
    std::printf(
        "%8s %9.2f | %8.2f / %6.2f %8.1f / %6.1f | %8.2f / %6.2f %8.1f / %6.1f | %8.2f / %6.2f "
        "%8.1f / %6.1f | %.2f, %.2f\n",
        target.c_str(), fork_ms, least(snap.frozen), median(snap.frozen), least(snap.total),
        median(snap.total), least(pre.frozen), median(pre.frozen), least(pre.total),
        median(pre.total), least(stopped.frozen), median(stopped.frozen), least(stopped.total),
        median(stopped.total), median(snap.frozen) / fork_ms, median(pre.frozen) / fork_ms);
    std::fflush(stdout);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  std::error_code ec;
  fs::remove(exe, ec);
  return 0;
}
