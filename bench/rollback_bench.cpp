// The rollback API (ckpt/rollback.h) against fork() of the same process, measured in the same run.
//
//   rollback_bench [--sizes MIB,...] [--repeat N]      (defaults: 64,1024  7)
//
// Each size runs in a fresh child process that fills N MiB with distinct 64-bit words, then:
//   tsetjmp vs fork  R times, alternately: 1 % of the pages written (one word in every 100th
//                    page), fork() timed in the parent (the child _exits at once, reaped after),
//                    1 % written again, tsetjmp() timed. The first tsetjmp() of the process, which
//                    also write-protects all its memory for the first time, is reported apart.
//   tlongjmp         R times: a checkpoint is kept; 1 % of the pages are written (scattered, then
//                    one contiguous run), and the time from tlongjmp() to the return of tsetjmp()
//                    is measured; every written page is checked to be back. "copy all" is a
//                    memcpy() of the whole region, what restoring everything would cost at least.
//   memory           per kept checkpoint (a snapshot process), from /proc: its page tables
//                    (VmPTE) and the pages only it still holds (Private in smaps_rollup: the old
//                    versions of what the program wrote since).
// Medians over the repetitions. Run it as root on a quiet machine.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ckpt/rollback.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kPage = 4096;
constexpr int kMaxRepeat = 64;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "rollback_bench: %s (%s)\n", msg.c_str(), ckpt_rollback_error());
  std::exit(1);
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

uint64_t word_at(uint64_t i) {  // splitmix64
  uint64_t z = i + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Writes one word in every 100th page (scattered) or 1 % of the pages in one run.
size_t write_one_percent(uint64_t* a, size_t len, bool contiguous, uint64_t salt) {
  size_t pages = len / kPage, n = 0;
  if (contiguous) {
    for (size_t p = pages / 3; p < pages / 3 + pages / 100; ++p, ++n) a[p * kPage / 8] = salt ^ p;
  } else {
    for (size_t p = 0; p < pages; p += 100, ++n) a[p * kPage / 8] = salt ^ p;
  }
  return n;
}

bool one_percent_restored(const uint64_t* a, size_t len, bool contiguous) {
  size_t pages = len / kPage;
  size_t first = contiguous ? pages / 3 : 0, last = contiguous ? pages / 3 + pages / 100 : pages;
  size_t step = contiguous ? 1 : 100;
  for (size_t p = first; p < last; p += step)
    if (a[p * kPage / 8] != word_at(p * kPage / 8)) return false;
  return true;
}

// Kept across the rollbacks of the tlongjmp measurement.
struct Persisted {
  int round;
  bool contiguous;
  Clock::time_point start;
  double ms[2][kMaxRepeat];
  bool bad;
};
Persisted g_p;

struct SnapshotMemory {
  int count = 0;
  double pte_kib = 0, private_kib = 0, rss_kib = 0;
};

long status_kib(const std::string& file, const std::string& key) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + key.size());
  return 0;
}

SnapshotMemory snapshot_memory() {
  SnapshotMemory m;
  std::ifstream kids("/proc/" + std::to_string(getpid()) + "/task/" + std::to_string(getpid()) +
                     "/children");
  int pid;
  while (kids >> pid) {
    std::string base = "/proc/" + std::to_string(pid);
    std::ifstream comm(base + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name != "ckpt-snapshot") continue;
    ++m.count;
    m.pte_kib += static_cast<double>(status_kib(base + "/status", "VmPTE:"));
    m.rss_kib += static_cast<double>(status_kib(base + "/smaps_rollup", "Rss:"));
    m.private_kib += static_cast<double>(status_kib(base + "/smaps_rollup", "Private_Clean:") +
                                         status_kib(base + "/smaps_rollup", "Private_Dirty:"));
  }
  if (m.count) {
    m.pte_kib /= m.count;
    m.rss_kib /= m.count;
    m.private_kib /= m.count;
  }
  return m;
}

// tsetjmp() and fork() alternately, with 1 % of the pages written before each.
void measure_tsetjmp(uint64_t* a, size_t len, int repeat, std::vector<double>& fork_ms,
                     std::vector<double>& set_ms) {
  for (int r = 0; r < repeat; ++r) {
    write_one_percent(a, len, false, 1000 + static_cast<uint64_t>(r));
    auto t = Clock::now();
    pid_t c = fork();
    if (c == 0) _exit(0);
    fork_ms.push_back(ms_since(t));
    waitpid(c, nullptr, 0);
    write_one_percent(a, len, false, 2000 + static_cast<uint64_t>(r));
    t = Clock::now();
    if (tsetjmp() < 0) die("tsetjmp");
    set_ms.push_back(ms_since(t));
  }
}

// `repeat` rollbacks after scattered writes, then as many after contiguous ones; the times land
// in g_p (persist() memory: the rest of this frame goes back each time).
void measure_tlongjmp(uint64_t* a, size_t len, int repeat) {
  int d = tsetjmp();
  if (d < 0) die("tsetjmp");
  if (g_p.round > 0) {
    g_p.ms[g_p.contiguous][g_p.round - 1] = ms_since(g_p.start);
    if (!one_percent_restored(a, len, g_p.contiguous)) g_p.bad = true;
  }
  if (g_p.round == repeat && !g_p.contiguous) {
    g_p.contiguous = true;
    g_p.round = 0;
  }
  if (g_p.round < repeat) {
    ++g_p.round;
    write_one_percent(a, len, g_p.contiguous, 3000 + static_cast<uint64_t>(g_p.round));
    g_p.start = Clock::now();
    tlongjmp(d);
    die("tlongjmp returned");
  }
  if (g_p.bad) die("memory not restored");
}

double copy_all_ms(const uint64_t* a, size_t len) {
  std::vector<uint64_t> copy(len / 8);
  double best = 1e9;
  for (int i = 0; i < 2; ++i) {
    auto t = Clock::now();
    std::memcpy(copy.data(), a, len);
    best = std::min(best, ms_since(t));
  }
  return best;
}

// One size, in its own process; prints one result line.
void run_size(size_t mib, int repeat) {
  size_t len = mib << 20;
  auto* a = static_cast<uint64_t*>(
      mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (a == MAP_FAILED) die("mmap");
  for (size_t i = 0; i < len / 8; ++i) a[i] = word_at(i);
  if (persist(&g_p, sizeof g_p) < 0) die("persist");
  auto t = Clock::now();
  if (tsetjmp() < 0) die("tsetjmp");
  double first = ms_since(t);
  std::vector<double> fork_ms, set_ms;
  measure_tsetjmp(a, len, repeat, fork_ms, set_ms);
  for (size_t i = 0; i < len / 8; i += kPage / 8) a[i] = word_at(i);  // the pattern again
  measure_tlongjmp(a, len, repeat);
  // What a kept checkpoint holds once the program has written 1 % since.
  write_one_percent(a, len, false, 4000);
  SnapshotMemory mem = snapshot_memory();
  std::vector<double> scattered(g_p.ms[0], g_p.ms[0] + repeat);
  std::vector<double> contiguous(g_p.ms[1], g_p.ms[1] + repeat);
  std::printf("%zu %.3f %.3f %.3f %zu %.3f %.3f %.3f %d %.0f %.0f %.0f\n", mib, median(fork_ms),
              median(set_ms), first, len / kPage / 100, median(scattered), median(contiguous),
              copy_all_ms(a, len), mem.count, mem.pte_kib, mem.private_kib, mem.rss_kib);
}

std::vector<size_t> parse_sizes(const char* s) {
  std::vector<size_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoul(item));
  return out;
}

struct Row {
  size_t mib = 0, pages = 0;
  double fork = 0, set = 0, first = 0, scattered = 0, contiguous = 0, copy = 0;
  int snaps = 0;
  double pte = 0, priv = 0, rss = 0;
};

// Runs one size in a child process and reads back its result line.
Row measure(size_t mib, int repeat) {
  int p[2];
  if (pipe(p) < 0) die("pipe");
  pid_t c = fork();
  if (c == 0) {
    dup2(p[1], 1);
    run_size(mib, repeat);
    std::fflush(stdout);
    _exit(0);
  }
  close(p[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int st = 0;
  waitpid(c, &st, 0);
  Row r;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
      std::sscanf(out.c_str(), "%zu %lf %lf %lf %zu %lf %lf %lf %d %lf %lf %lf", &r.mib, &r.fork,
                  &r.set, &r.first, &r.pages, &r.scattered, &r.contiguous, &r.copy, &r.snaps,
                  &r.pte, &r.priv, &r.rss) != 12)
    die("the run for " + std::to_string(mib) + " MiB failed");
  return r;
}

void print(const std::vector<Row>& rows, int repeat) {
  std::printf("TSETJMP vs FORK (median of %d; 1 %% of the pages written before each)\n", repeat);
  std::printf("%6s %10s %12s %7s | %14s\n", "MiB", "fork ms", "tsetjmp ms", "ratio",
              "first tsetjmp");
  for (auto& r : rows)
    std::printf("%6zu %10.2f %12.2f %6.2fx | %11.2f ms\n", r.mib, r.fork, r.set, r.set / r.fork,
                r.first);
  std::printf("\nTLONGJMP after 1 %% of the pages was written (median of %d; all checked)\n",
              repeat);
  std::printf("%6s %8s %15s %16s | %12s\n", "MiB", "pages", "scattered ms", "contiguous ms",
              "copy all ms");
  for (auto& r : rows)
    std::printf("%6zu %8zu %15.2f %16.2f | %12.2f\n", r.mib, r.pages, r.scattered, r.contiguous,
                r.copy);
  std::printf("\nMEMORY per kept checkpoint (snapshot process, after 1 %% written since)\n");
  std::printf("%6s %6s %16s %18s %12s\n", "MiB", "kept", "page tables KiB", "only its own KiB",
              "Rss KiB");
  for (auto& r : rows)
    std::printf("%6zu %6d %16.0f %18.0f %12.0f\n", r.mib, r.snaps, r.pte, r.priv, r.rss);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes = {64, 1024};
  int repeat = 7;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--sizes" && i + 1 < argc) {
      sizes = parse_sizes(argv[++i]);
    } else if (a == "--repeat" && i + 1 < argc) {
      repeat = std::clamp(std::atoi(argv[++i]), 1, kMaxRepeat);
    } else {
      std::fprintf(stderr, "usage: rollback_bench [--sizes MIB,...] [--repeat N]\n");
      return 2;
    }
  }
  std::vector<Row> rows;
  for (size_t mib : sizes) rows.push_back(measure(mib, repeat));
  print(rows, repeat);
  return 0;
}
