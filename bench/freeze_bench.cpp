// How long a --leave-running dump keeps a process stopped ("frozen") and takes in all ("total"),
// with the copy-on-write snapshot (dump/snapshot.hpp) and without it (every page copied while the
// process is stopped), next to the machine's limit for a consistent snapshot: fork() of the same
// process, measured by the process itself in the same run.
//
//   build/bench/freeze_bench [--dir DIR] [--runs N] [MIB...]     (default: /dev/shm, 5, 64 1024)
//
// The target is this binary in --target mode: it touches MIB MiB with distinct words, times
// fork() of itself (the child exits at once), reports, and sleeps until killed.
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
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

int target_main(uint64_t mib) {
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

Figures dump_runs(pid_t pid, const fs::path& dir, int runs, bool snapshot) {
  Figures f;
  for (int i = 0; i < runs; ++i) {
    fs::path store_dir = dir / fmt::format("freeze-bench-{}-{}", ::getpid(), i);
    auto store = check(image::Store::open(store_dir, {.create = true}), pid);
    DumpOptions opts;
    opts.pid = pid;
    opts.leave_running = true;
    opts.snapshot = snapshot;
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
  if (argc == 3 && std::string(argv[1]) == "--target") return target_main(std::stoull(argv[2]));
  fs::path dir = "/dev/shm";
  int runs = 5;
  std::vector<uint64_t> sizes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--runs" && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
    else
      sizes.push_back(std::stoull(a));
  }
  if (sizes.empty()) sizes = {64, 1024};
  fs::path exe = bench::make_target_exe();
  std::printf("store in %s, %d dumps each (min / median ms); fork = the target's own fork()\n",
              dir.c_str(), runs);
  std::printf("%6s %9s | %17s %17s | %17s %17s | %s\n", "MiB", "fork ms", "frozen (snapshot)",
              "total (snapshot)", "frozen (stopped)", "total (stopped)", "frozen/fork");
  for (uint64_t mib : sizes) {
    int report = -1;
    pid_t pid = bench::spawn_target(exe, {"--target", std::to_string(mib)}, report);
    int64_t fork_ns = 0;
    if (::read(report, &fork_ns, sizeof fork_ns) != sizeof fork_ns)
      die("the target did not start", pid);
    ::close(report);
    Figures snap = dump_runs(pid, dir, runs, true);
    Figures stopped = dump_runs(pid, dir, runs, false);
    double fork_ms = fork_ns / 1e6;
    std::printf("%6llu %9.2f | %8.2f / %6.2f %8.1f / %6.1f | %8.2f / %6.2f %8.1f / %6.1f | %.2f\n",
                static_cast<unsigned long long>(mib), fork_ms, least(snap.frozen),
                median(snap.frozen), least(snap.total), median(snap.total), least(stopped.frozen),
                median(stopped.frozen), least(stopped.total), median(stopped.total),
                median(snap.frozen) / fork_ms);
    std::fflush(stdout);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  std::error_code ec;
  fs::remove(exe, ec);
  return 0;
}
