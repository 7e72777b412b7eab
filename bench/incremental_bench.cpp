// What an incremental generation costs next to a full one (issue 13): a process holding MIB MiB
// rewrites 1 % of its pages between dumps; each --leave-running dump of it is timed and its
// generation's bytes counted, first a full one, then CHAIN incremental ones: once finding the
// changed pages by their hashes, once with write tracking (resources/write_tracking.hpp). Then
// the restore of the newest generation of the tracked chain is timed against the restore of a
// full generation of the same state, and the restored process checks its memory. The two
// restores alternate RESTORES times (which goes first swaps each time) and their medians are
// compared: a restore's populate of fresh memory varies 2-3x from one moment to the next on a VM
// whose host reclaims freed memory (docs/benchmarks.md, 2026-12-02).
//
//   build/bench/incremental_bench [--dir DIR] [--mib MIB] [--chain CHAIN] [--restores N]
//   (defaults: /dev/shm, 1024, 10, 3)
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include "bench_util.hpp"
#include "dump/dump.hpp"
#include "image/store.hpp"
#include "resources/write_tracking.hpp"
#include "restore/restore.hpp"

namespace fs = std::filesystem;
using namespace ckpt;
using bench::check;
using bench::die;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kPage = 4096;
volatile sig_atomic_t g_write = 0, g_check = 0;

// The target: MIB MiB of distinct words; SIGUSR1 rewrites every 100th page (one word of each,
// a round counter kept in the page) and answers on fd 3; SIGUSR2 checks every page against the
// rounds it saw and exits 0 when all match.
int target_main(uint64_t mib) {
  size_t len = mib << 20, pages = len / kPage;
  auto* mem = static_cast<uint64_t*>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) return 2;
  ::madvise(mem, len, MADV_POPULATE_WRITE);
  for (size_t i = 0; i < len / 8; ++i) mem[i] = i * 0x9e3779b97f4a7c15ull;
  ::signal(SIGUSR1, [](int) { g_write = 1; });
  ::signal(SIGUSR2, [](int) { g_check = 1; });
  // Blocked but in sigsuspend(): a signal never falls between the look at the flags and the wait.
  sigset_t both, none;
  sigemptyset(&both);
  sigemptyset(&none);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  ::sigprocmask(SIG_BLOCK, &both, nullptr);
  uint64_t round = 0;
  char ready = 'r';
  if (::write(3, &ready, 1) != 1) return 2;
  for (;;) {
    if (!g_write && !g_check) ::sigsuspend(&none);
    if (g_write) {
      g_write = 0;
      ++round;
      for (size_t p = round % 100; p < pages; p += 100) mem[p * kPage / 8] = round;
      if (::write(3, &ready, 1) != 1) return 2;
    }
    if (g_check) {
      for (size_t p = 0; p < pages; ++p) {
        size_t i = p * kPage / 8, k = p % 100;
        uint64_t want = k >= 1 && k <= round ? k : i * 0x9e3779b97f4a7c15ull;
        if (mem[i] != want) return 3;
      }
      return 0;
    }
  }
}

double ms(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double, std::milli>(ns).count();
}

uint64_t bytes_of(const fs::path& dir) {
  uint64_t n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

struct Dumped {
  double total_ms = 0;
  double frozen_ms = 0;
  uint64_t bytes = 0;
  std::string unread;  // pages known unchanged by write tracking
};

Dumped dump(image::Store& store, pid_t pid, bool incremental,
            write_tracking::Tracker* tracker = nullptr) {
  DumpOptions opts;
  opts.pid = pid;
  opts.leave_running = true;
  opts.incremental = incremental;
  opts.tracker = tracker;
  auto r = check(dump_process(store, opts), pid);
  auto unread = r.generation.labels.find("pages_unread");
  return {ms(r.total), ms(r.frozen), bytes_of(r.generation.path),
          unread == r.generation.labels.end() ? "-" : unread->second};
}

void wait_byte(int fd, pid_t pid) {
  char c;
  if (::read(fd, &c, 1) != 1) die("the target did not answer", pid);
}

// A full dump into a new store in `dir`, then `chain` incremental ones, each after the target
// rewrote 1 % of its pages.
std::vector<Dumped> dump_chain(const fs::path& dir, pid_t pid, int report, int chain,
                               write_tracking::Tracker* tracker) {
  auto store = check(image::Store::open(dir, {.create = true}), pid);
  std::vector<Dumped> out{dump(store, pid, false, tracker)};
  for (int g = 0; g < chain; ++g) {
    ::kill(pid, SIGUSR1);
    wait_byte(report, pid);
    out.push_back(dump(store, pid, true, tracker));
  }
  return out;
}

// Restores the newest generation of `dir` with the target's PID free, checks it and ends it.
double restore_and_check(const fs::path& dir, pid_t pid) {
  auto store = check(image::Store::open(dir, {}));
  auto start = Clock::now();
  auto r = check(restore_process(store, RestoreOptions{}));
  double took = ms(Clock::now() - start);
  ::kill(r.pid, SIGUSR2);
  int st = 0;
  ::waitpid(r.pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die(fmt::format("the restored process found its memory wrong (status {:#x})", st), pid);
  return took;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void end(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--target") return target_main(std::stoull(argv[2]));
  fs::path dir = "/dev/shm";
  uint64_t mib = 1024;
  int chain = 10;
  int restores = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--mib") mib = std::stoull(argv[i + 1]);
    if (a == "--chain") chain = std::max(1, std::min(99, std::atoi(argv[i + 1])));
    if (a == "--restores") restores = std::max(1, std::min(99, std::atoi(argv[i + 1])));
  }
  fs::path exe = bench::make_target_exe();
  int report = -1;
  pid_t pid = bench::spawn_target(exe, {"--target", std::to_string(mib)}, report);
  wait_byte(report, pid);
  fs::path hash_dir = dir / fmt::format("incr-bench-{}-hashes", ::getpid());
  fs::path incr_dir = dir / fmt::format("incr-bench-{}-chain", ::getpid());
  fs::path full_dir = dir / fmt::format("incr-bench-{}-full", ::getpid());
  std::vector<Dumped> hashed = dump_chain(hash_dir, pid, report, chain, nullptr);
  write_tracking::Tracker tracker;
  std::vector<Dumped> tracked = dump_chain(incr_dir, pid, report, chain, &tracker);
  auto full_store = check(image::Store::open(full_dir, {.create = true}), pid);
  Dumped last_full = dump(full_store, pid, false);
  end(pid);
  std::vector<double> chain_ms, full_ms;
  for (int r = 0; r < restores; ++r) {
    bool chain_first = r % 2 == 0;
    if (chain_first) chain_ms.push_back(restore_and_check(incr_dir, pid));
    full_ms.push_back(restore_and_check(full_dir, pid));
    if (!chain_first) chain_ms.push_back(restore_and_check(incr_dir, pid));
  }
  double load[3] = {};
  (void)::getloadavg(load, 3);
  std::printf("machine: %ld cores online, load average %.1f %.1f %.1f; store in %s\n",
              ::sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2], dir.c_str());
  std::printf("%llu MiB, 1 %% of the pages rewritten before each incremental dump\n",
              static_cast<unsigned long long>(mib));
  std::printf("%-18s | %-27s | %-51s\n", "", "page hashes",
              "write tracking (unread: pages not read)");
  std::printf("%-18s | %10s %7s %8s | %10s %9s %7s %8s %12s\n", "generation", "total ms", "time %",
              "bytes %", "total ms", "frozen ms", "time %", "bytes %", "unread");
  const Dumped& base = hashed[0];
  auto pct = [](double a, double b) { return 100.0 * a / b; };
  for (size_t g = 0; g < hashed.size(); ++g) {
    const Dumped &h = hashed[g], &t = tracked[g];
    std::printf("%-18s | %10.1f %6.1f%% %7.2f%% | %10.1f %9.1f %6.1f%% %7.2f%% %12s\n",
                g == 0 ? "full" : fmt::format("incremental {}", g).c_str(), h.total_ms,
                pct(h.total_ms, base.total_ms), pct(double(h.bytes), double(base.bytes)),
                t.total_ms, t.frozen_ms, pct(t.total_ms, tracked[0].total_ms),
                pct(double(t.bytes), double(tracked[0].bytes)), t.unread.c_str());
  }
  std::printf("%-18s | %10.1f %6.1f%% %7.2f%%\n", "full (last state)", last_full.total_ms,
              pct(last_full.total_ms, base.total_ms),
              pct(double(last_full.bytes), double(base.bytes)));
  for (int r = 0; r < restores; ++r)
    std::printf("restore %d: %d-generation chain %.1f ms, full generation %.1f ms (%.2fx)\n", r + 1,
                chain + 1, chain_ms[r], full_ms[r], chain_ms[r] / full_ms[r]);
  std::printf(
      "restore of a %d-generation chain: median %.1f ms; of a full generation: median "
      "%.1f ms (%.2fx)\n",
      chain + 1, median(chain_ms), median(full_ms), median(chain_ms) / median(full_ms));
  std::error_code ec;
  fs::remove_all(hash_dir, ec);
  fs::remove_all(incr_dir, ec);
  fs::remove_all(full_dir, ec);
  fs::remove(exe, ec);
  return 0;
}
