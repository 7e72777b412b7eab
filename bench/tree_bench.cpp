// Dump and restore time of a process tree against the number of its processes.
//
//   tree_bench [--counts N,...] [--mib M] [--shared-mib S] [--dir DIR] [--repeat R]
//              [--pre-copy 0|1]
//              (defaults: 1,4,16,64  4  0  /dev/shm  3  0)
//
// The target is a copy of this binary in --target mode: the root first fills S MiB, which its
// children then share with it copy-on-write (a forked server's workers: stored once in the
// image), then it forks N-1 children and every process touches M MiB of its own with distinct
// words. The image's size is reported. Each repetition dumps the tree with --leave-running (the
// frozen time is then how long every process stays stopped, without the commit's fsyncs), kills
// it, restores it, and has every process check its memory. Medians are reported, with the cost
// per process beyond the first.
//
// Next to them, the machine's floors for the same tree, measured in the same repetition: "fork
// floor", every process of a tree of the same size forking once, all at once (a consistent copy
// of each one's memory can be taken no faster: the short freeze's limit); "build floor", a tree
// of the same shape created from scratch, its processes forked one after the other by the root
// and each filling its memory from a buffer on its own (mmap, MADV_POPULATE_WRITE, memcpy), on
// every CPU at once (what a restore must do at least, without reading anything or being traced).
// With --pre-copy 1 the dumps copy the memory while the processes run (dump/pre_copy.hpp) and
// fork none of them unless they wrote too much meanwhile: the fork floor is then no floor for the
// freeze, which only reads the processes' state and the pages written since their copy.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "dump/dump.hpp"
#include "image/store.hpp"
#include "restore/restore.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ckpt;
using bench::check;
using bench::die;
using bench::make_target_exe;
using Clock = std::chrono::steady_clock;

double ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

uint64_t word_at(uint64_t i, uint64_t salt) {
  uint64_t z = i * 0x9e3779b97f4a7c15ULL + salt;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  return z ^ (z >> 31);
}

uint64_t* touch(uint64_t mib, uint64_t salt) {
  size_t len = mib << 20;
  auto* w = static_cast<uint64_t*>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (w == MAP_FAILED) ::_exit(2);
  ::madvise(w, len, MADV_POPULATE_WRITE);
  for (size_t i = 0; i < len / 8; ++i) w[i] = word_at(i, salt);
  return w;
}

bool intact(const uint64_t* w, uint64_t mib, uint64_t salt) {
  for (size_t i = 0; i < (mib << 20) / 8; ++i)
    if (w[i] != word_at(i, salt)) return false;
  return true;
}

void wait_usr1() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  while (sigwaitinfo(&set, nullptr) != SIGUSR1) {
  }
}

// The root starts the others, reports once all are ready (fd 3), and on SIGUSR1 passes it on
// and collects their verdicts: exit 0 when every process found its memory intact.
int target_main(int count, uint64_t mib, uint64_t shared_mib) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  constexpr uint64_t kSharedSalt = 1 << 20;
  uint64_t* shared = shared_mib ? touch(shared_mib, kSharedSalt) : nullptr;
  auto shared_intact = [&] { return !shared || intact(shared, shared_mib, kSharedSalt); };
  int p[2];
  if (::pipe(p) < 0) return 2;
  std::vector<pid_t> kids;
  for (int i = 1; i < count; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(3);
      ::close(p[0]);
      uint64_t* w = touch(mib, static_cast<uint64_t>(i));
      if (::write(p[1], "r", 1) != 1) ::_exit(2);
      ::close(p[1]);
      wait_usr1();
      ::_exit(intact(w, mib, static_cast<uint64_t>(i)) && shared_intact() ? 0 : 3);
    }
    kids.push_back(pid);
  }
  ::close(p[1]);
  uint64_t* w = touch(mib, 0);
  char c;
  for (int i = 1; i < count; ++i)
    if (::read(p[0], &c, 1) != 1) return 2;
  ::close(p[0]);
  if (::write(3, "r", 1) != 1) return 2;
  ::close(3);
  wait_usr1();
  bool ok = intact(w, mib, 0) && shared_intact();
  for (pid_t k : kids) ::kill(k, SIGUSR1);
  for (pid_t k : kids) {
    int st = 0;
    ok = ::waitpid(k, &st, 0) == k && WIFEXITED(st) && WEXITSTATUS(st) == 0 && ok;
  }
  return ok ? 0 : 3;
}

pid_t spawn_target(const fs::path& exe, int count, uint64_t mib, uint64_t shared_mib) {
  int report = -1;
  pid_t pid = bench::spawn_target(
      exe, {"--target", std::to_string(count), std::to_string(mib), std::to_string(shared_mib)},
      report);
  char c;
  if (::read(report, &c, 1) != 1) die("the target did not start", pid);
  ::close(report);
  return pid;
}

// Kills the tree and reaps every process of it (they are ours as the subreaper): restore
// needs their PIDs.
void kill_tree(pid_t root) {
  std::vector<pid_t> all{root};
  std::string text;
  if (FILE* f = std::fopen(fmt::format("/proc/{}/task/{}/children", root, root).c_str(), "r")) {
    for (int pid; std::fscanf(f, "%d", &pid) == 1;) all.push_back(pid);
    std::fclose(f);
  }
  for (pid_t p : all) ::kill(p, SIGKILL);
  for (pid_t p : all)
    while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
    }
}

struct Sample {
  double frozen = 0, dump = 0, restore = 0, image_mib = 0, fork_floor = 0, build_floor = 0;
};

// Reads `count` bytes, one from each process of a floor's tree.
void await_all(int fd, int count) {
  char c;
  for (int i = 0; i < count; ++i)
    if (::read(fd, &c, 1) != 1) die("a process of a floor's tree died");
}

void reap_children() {
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
}

// What each process of the build floor does: its memory made and filled from `source`, then
// reported on `done`.
bool fill_and_report(const uint64_t* source, uint64_t mib, int done) {
  size_t len = mib << 20;
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  ::madvise(m, len, MADV_POPULATE_WRITE);
  std::memcpy(m, source, len);
  return ::write(done, "d", 1) == 1;
}

// The build floor (see the top): ms from the root's fork to the last process's report.
double build_floor(int count, uint64_t mib, const uint64_t* source) {
  int p[2];
  if (::pipe(p) < 0) die("pipe");
  auto start = Clock::now();
  pid_t root = ::fork();
  if (root == 0) {
    ::close(p[0]);
    for (int i = 1; i < count; ++i)
      if (::fork() == 0) ::_exit(fill_and_report(source, mib, p[1]) ? 0 : 2);
    if (!fill_and_report(source, mib, p[1])) ::_exit(2);
    reap_children();
    ::_exit(0);
  }
  ::close(p[1]);
  await_all(p[0], count);
  double took = ms(Clock::now() - start);
  ::close(p[0]);
  ::waitpid(root, nullptr, 0);
  return took;
}

// A process of the fork floor, a copy of this binary like the dumped ones (a fork of the
// benchmark would carry its memory too): `mib` MiB of its own, then one fork() on SIGUSR1,
// reported on fd 3 once it returned.
int fork_floor_main(uint64_t mib) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  touch(mib, 1);
  if (::write(3, "r", 1) != 1) return 2;
  wait_usr1();
  pid_t copy = ::fork();
  if (copy == 0) ::_exit(0);
  if (::write(3, "d", 1) != 1) return 2;
  ::waitpid(copy, nullptr, 0);
  return 0;
}

// The fork floor (see the top): ms from telling `count` such processes to fork to the last one's
// fork returning.
double fork_floor(const fs::path& exe, int count, uint64_t mib) {
  std::vector<pid_t> procs;
  std::vector<int> reports;
  for (int i = 0; i < count; ++i) {
    int report = -1;
    procs.push_back(bench::spawn_target(exe, {"--fork-floor", std::to_string(mib)}, report));
    reports.push_back(report);
  }
  for (int fd : reports) await_all(fd, 1);
  auto start = Clock::now();
  for (pid_t pid : procs) ::kill(pid, SIGUSR1);
  for (int fd : reports) await_all(fd, 1);
  double took = ms(Clock::now() - start);
  for (int fd : reports) ::close(fd);
  for (pid_t pid : procs) ::waitpid(pid, nullptr, 0);
  return took;
}

Sample run_once(const fs::path& exe, image::Store& store, int count, uint64_t mib,
                uint64_t shared_mib, const uint64_t* source, bool pre_copy) {
  Sample s;
  s.fork_floor = fork_floor(exe, count, mib);
  s.build_floor = build_floor(count, mib, source);
  pid_t root = spawn_target(exe, count, mib, shared_mib);
  DumpOptions d;
  d.pid = root;
  d.leave_running = true;
  d.pre_copy = pre_copy;
  auto dumped = check(dump_process(store, d));
  s.frozen = ms(dumped.frozen);
  s.dump = ms(dumped.total);
  s.image_mib = static_cast<double>(dumped.generation.total_bytes) / (1 << 20);
  kill_tree(root);
  auto start = Clock::now();
  RestoreOptions r;
  r.generation = dumped.generation.id;
  auto restored = check(restore_process(store, r));
  s.restore = ms(Clock::now() - start);
  ::kill(restored.pid, SIGUSR1);
  int st = 0;
  ::waitpid(restored.pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die(fmt::format("the restored tree of {} found its memory changed (status {:#x})", count, st));
  fs::remove_all(dumped.generation.path);
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Options {
  std::vector<int> counts = {1, 4, 16, 64};
  uint64_t mib = 4;
  uint64_t shared_mib = 0;
  std::string dir = "/dev/shm";
  int repeat = 3;
  bool pre_copy = false;
};

constexpr const char* kUsage =
    "usage: tree_bench [--counts N,...] [--mib M] [--shared-mib S] [--dir DIR] [--repeat R] "
    "[--pre-copy 0|1]";

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--counts") {
      o.counts.clear();
      for (size_t pos = 0; pos < v.size();) {
        size_t comma = std::min(v.find(',', pos), v.size());
        o.counts.push_back(std::stoi(v.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else if (a == "--mib") {
      o.mib = std::stoull(v);
    } else if (a == "--shared-mib") {
      o.shared_mib = std::stoull(v);
    } else if (a == "--dir") {
      o.dir = v;
    } else if (a == "--repeat") {
      o.repeat = std::max(1, std::stoi(v));
    } else if (a == "--pre-copy") {
      o.pre_copy = v == "1";
    } else {
      die(kUsage);
    }
  }
  if (argc % 2 == 0) die(kUsage);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--target")
    return target_main(std::stoi(argv[2]), std::stoull(argv[3]), std::stoull(argv[4]));
  if (argc == 3 && std::string(argv[1]) == "--fork-floor")
    return fork_floor_main(std::stoull(argv[2]));
  Options o = parse(argc, argv);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  fs::path exe = make_target_exe();
  fs::path store_dir = fs::path(o.dir) / fmt::format("ckpt-tree-bench-{}", ::getpid());
  auto store = check(image::Store::open(store_dir, {.create = true}));
  std::printf("shared MiB (root's, before the forks): %lu\n", o.shared_mib);
  std::printf("%6s %6s %10s %10s %10s %14s %14s %10s %10s %11s\n", "procs", "MiB", "frozen ms",
              "dump ms", "restore ms", "frozen/proc", "restore/proc", "image MiB", "fork floor",
              "build floor");
  // The build floor's processes copy from it: touched once, before any is timed.
  const uint64_t* source = touch(o.mib, 7);
  double frozen_one = 0, restore_one = 0;
  for (int n : o.counts) {
    std::vector<double> frozen, dump, restore, fork_floors, build_floors;
    double image_mib = 0;
    for (int i = 0; i < o.repeat; ++i) {
      Sample s = run_once(exe, store, n, o.mib, o.shared_mib, source, o.pre_copy);
      image_mib = s.image_mib;
      frozen.push_back(s.frozen);
      dump.push_back(s.dump);
      restore.push_back(s.restore);
      fork_floors.push_back(s.fork_floor);
      build_floors.push_back(s.build_floor);
    }
    double f = median(frozen), r = median(restore);
    if (n == 1) frozen_one = f, restore_one = r;
    std::string per_f = n > 1 && frozen_one > 0 ? fmt::format("{:.2f}", (f - frozen_one) / (n - 1))
                                                : std::string("-");
    std::string per_r = n > 1 && restore_one > 0
                            ? fmt::format("{:.2f}", (r - restore_one) / (n - 1))
                            : std::string("-");
    std::printf("%6d %6lu %10.1f %10.1f %10.1f %14s %14s %10.1f %10.1f %11.1f\n", n, n * o.mib, f,
                median(dump), r, per_f.c_str(), per_r.c_str(), image_mib, median(fork_floors),
                median(build_floors));
    std::fflush(stdout);
  }
  fs::remove_all(store_dir);
  fs::remove(exe);
  return 0;
}
