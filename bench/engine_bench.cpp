// Dump and restore speed of the engine against the machine's raw limits, measured in the same run.
//
//   engine_bench [--sizes MIB,...] [--dirs DIR,...] [--repeat N] [--turns N] [--thp]
//                (defaults: 64,1024  /dev/shm,/var/tmp  3  4; --thp: the target's memory, and
//                the raw limits', get MADV_HUGEPAGE; --turns 0 leaves out the dump and raw
//                write in turns, dump_and_raw_in_turns)
//
// The target is a child running this binary in --target mode: it touches N MiB with distinct
// 64-bit words and waits. Each repetition, interleaved so that the machine's drifting speed
// affects both alike:
//   raw dump     the region read into one reused 8 MiB buffer, write() to a file in the store's
//                directory with its writeback started every 32 MiB (as the engine does), fsync;
//                read by process_vm_readv and by /proc/PID/mem; and once more by process_vm_readv
//                into two buffers in turn with the write on a second thread (as the engine
//                overlaps them); each into a file of its own, kept until the run ends as the
//                image is; the fastest way's median counts (raw_dump_median)
//   engine dump  dump_process() into a store in that directory, leaving the target running in
//                odd runs (before the raw dumps) and killing it in even ones (after them)
//   raw read     read() the raw file back into a fresh anonymous mapping
//   raw fill     another process populates a fresh mapping with MADV_POPULATE_WRITE; the file is
//                read into a buffer and process_vm_writev'd into it (the engine's way); with a
//                2 MiB buffer (the engine's) and an 8 MiB one, the faster counts
//   raw direct   the same populate, then that process read()s the file into the mapping itself
//   raw overlap  the fill with the populate in step: the process populates 32 MiB pieces in order
//                while the file is read and written into the pieces already populated (on two
//                cores the populate hides behind the copy, as the engine's restore does)
//   engine rest. restore_process(), then a sample of the restored memory is compared over
//                process_vm_readv and the restored process checks all of it itself (exit code)
// Medians over the repetitions are reported; the restore ratio is against the fastest raw way.
// "best" is the same ratio between the fastest runs, less sensitive to a busy machine.
// Reads come from the page cache in both cases (the files were just written). Every timed step
// starts after settle(): nothing left to write back and freshly freed memory at hand.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <semaphore>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "common/fs_util.hpp"
#include "common/populate.hpp"
#include "dump/dump.hpp"
#include "image/store.hpp"
#include "proc/proc_file.hpp"
#include "resources/memory.hpp"
#include "restore/restore.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ckpt;
using bench::check;
using bench::die;
using bench::make_target_exe;
using Clock = std::chrono::steady_clock;

constexpr size_t kBuffer = size_t{8} << 20;
constexpr size_t kFillChunk = size_t{2} << 20;  // the restore's fill buffer (memory.cpp)
constexpr size_t kPage = 4096;
constexpr size_t kSampleStride = 16;  // pages between two verified pages
constexpr int kBadMemoryExit = 3;

uint64_t word_at(uint64_t i) {  // splitmix64: every word distinct, nothing compressible
  uint64_t z = i + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double secs(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double>(ns).count();
}

// ---- the target process (a fresh exec of this binary) ----

int target_main(uint64_t mib, bool thp) {
  size_t len = mib << 20;
  auto* words = static_cast<uint64_t*>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (words == MAP_FAILED) return 2;
  if (thp) ::madvise(words, len, MADV_HUGEPAGE);
  ::madvise(words, len, MADV_POPULATE_WRITE);  // quicker start than faulting page by page
  for (size_t i = 0; i < len / 8; ++i) words[i] = word_at(i);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  uint64_t addr = reinterpret_cast<uint64_t>(words);
  if (::write(3, &addr, sizeof addr) != sizeof addr) return 2;
  ::close(3);
  while (sigwaitinfo(&set, nullptr) != SIGUSR1) {
  }
  // Asked to finish (after the restore): check every word.
  for (size_t i = 0; i < len / 8; ++i)
    if (words[i] != word_at(i)) return kBadMemoryExit;
  return 0;
}

struct Target {
  pid_t pid = 0;
  uint64_t addr = 0;
  size_t len = 0;
};

Target spawn_target(const fs::path& exe, uint64_t mib, bool thp) {
  int report = -1;
  pid_t pid = bench::spawn_target(exe, {"--target", std::to_string(mib), thp ? "1" : "0"}, report);
  Target t{pid, 0, size_t(mib) << 20};
  if (::read(report, &t.addr, sizeof t.addr) != sizeof t.addr) die("the target did not start", pid);
  ::close(report);
  return t;
}

void reap(pid_t pid, int want_signal) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) die(fmt::format("waitpid {} failed", pid));
  if (!WIFSIGNALED(st) || WTERMSIG(st) != want_signal)
    die(fmt::format("pid {} ended with status {:#x}, expected signal {}", pid, st, want_signal));
}

// ---- the raw limits ----

// How the raw dump reads the target: the fastest way there is, so both are timed and the faster
// one is the limit (the engine reads through /proc/PID/mem, proc/proc_file.hpp says why).
enum class Reader { vm_readv, proc_mem };

// Every timed step starts alike: no writeback of earlier steps pending, and `len` bytes of free
// memory the host backs. On this VM memory freed a while ago goes back to the host (free page
// reporting), so whichever step ran first after a pause paid for backing it again (up to 4x its
// time at 1 GiB) and whichever ran right after another freed it did not. Populating and freeing
// `len` just before each step gives every step freshly freed, still backed pages.
void settle(size_t len) {
  ::sync();
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap failed");
  (void)::madvise(p, len, MADV_POPULATE_WRITE);
  ::munmap(p, len);
}

void read_piece(const Target& t, std::optional<proc::MemFile>& mem, char* to, size_t off,
                size_t n) {
  if (mem) {
    check(mem->read(t.addr + off, to, n), t.pid);
    return;
  }
  iovec local{to, n}, remote{reinterpret_cast<void*>(t.addr + off), n};
  if (::process_vm_readv(t.pid, &local, 1, &remote, 1, 0) != ssize_t(n))
    die(fmt::format("process_vm_readv pid {}: {}", t.pid, std::strerror(errno)), t.pid);
}

// Starts the writeback of every 32 MiB written: on a disk the final fsync then waits for the
// last of it only. Without it the engine, which does it, beat the raw dump (2026-12-04,
// docs/benchmarks.md).
struct Writeback {
  static constexpr size_t kEvery = size_t{32} << 20;
  size_t started = 0;  // bytes whose writeback was started
  void written(int fd, size_t end) {
    if (end - started < kEvery) return;
    (void)::sync_file_range(fd, static_cast<off_t>(started), static_cast<off_t>(end - started),
                            SYNC_FILE_RANGE_WRITE);
    started = end;
  }
};

double raw_dump_with(const Target& t, const fs::path& file, HugeVector<char>& buf, Reader how) {
  settle(t.len);
  auto start = Clock::now();
  auto fd = check(open_file(file, O_WRONLY | O_CREAT | O_TRUNC));
  std::optional<proc::MemFile> mem;
  if (how == Reader::proc_mem) mem = check(proc::MemFile::open(t.pid), t.pid);
  Writeback writeback;
  for (size_t off = 0; off < t.len; off += buf.size()) {
    size_t n = std::min(buf.size(), t.len - off);
    read_piece(t, mem, buf.data(), off, n);
    check(write_all(fd.get(), {reinterpret_cast<std::byte*>(buf.data()), n}, file.string()), t.pid);
    writeback.written(fd.get(), off + n);
  }
  check(fsync_fd(fd.get(), file.string()), t.pid);
  return seconds_since(start);
}

// The same with the write on a second thread, as the engine does: the next piece is read while
// the last is written, so on a disk the limit is the slower of the two, not their sum.
double raw_dump_pipelined(const Target& t, const fs::path& file, HugeVector<char>& buf) {
  static HugeVector<char> other(kBuffer);  // kept across runs, as `buf` is
  std::array<char*, 2> bufs{buf.data(), other.data()};
  std::binary_semaphore filled[2]{std::binary_semaphore{0}, std::binary_semaphore{0}};
  std::binary_semaphore emptied[2]{std::binary_semaphore{1}, std::binary_semaphore{1}};
  size_t piece = std::min(buf.size(), other.size());
  settle(t.len);
  auto start = Clock::now();
  auto fd = check(open_file(file, O_WRONLY | O_CREAT | O_TRUNC));
  std::thread writer([&] {
    Writeback writeback;
    for (size_t off = 0, i = 0; off < t.len; off += piece, i ^= 1) {
      filled[i].acquire();
      size_t n = std::min(piece, t.len - off);
      check(write_all(fd.get(), {reinterpret_cast<std::byte*>(bufs[i]), n}, file.string()), t.pid);
      writeback.written(fd.get(), off + n);
      emptied[i].release();
    }
  });
  std::optional<proc::MemFile> none;  // process_vm_readv: no file to open first
  for (size_t off = 0, i = 0; off < t.len; off += piece, i ^= 1) {
    emptied[i].acquire();
    read_piece(t, none, bufs[i], off, std::min(piece, t.len - off));
    filled[i].release();
  }
  writer.join();
  check(fsync_fd(fd.get(), file.string()), t.pid);
  return seconds_since(start);
}

double raw_read_fresh(const fs::path& file, size_t len, bool thp) {
  settle(len);
  auto start = Clock::now();
  auto fd = check(open_file(file, O_RDONLY));
  void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap failed");
  if (thp) ::madvise(mem, len, MADV_HUGEPAGE);
  check(read_exact(fd.get(), {static_cast<std::byte*>(mem), len}, file.string()));
  double s = seconds_since(start);
  ::munmap(mem, len);
  return s;
}

// A process with a fresh mapping, filled the way a restore could fill it. On 'p' it populates
// the mapping with MADV_POPULATE_WRITE (the caller then process_vm_writev's into it); on 'd' it
// also read()s the file straight into it, one copy and no buffer in between.
struct Sink {
  pid_t pid = 0;
  uint64_t addr = 0;
  int cmd = -1, ack = -1;
  std::atomic<uint64_t>* populated = nullptr;  // shared: bytes populated so far, on 'o'
};

constexpr size_t kPopulatePiece = 32 << 20;

[[noreturn]] void sink_main(const fs::path& file, size_t len, bool thp, int cmd, int ack,
                            std::atomic<uint64_t>* populated) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (thp) ::madvise(mem, len, MADV_HUGEPAGE);
  uint64_t addr = reinterpret_cast<uint64_t>(mem);
  char c;
  if (::write(ack, &addr, sizeof addr) != sizeof addr || ::read(cmd, &c, 1) != 1) _exit(1);
  int r = 0;
  if (c == 'o') {  // piece by piece, saying how far it got
    for (size_t off = 0; off < len && r == 0; off += kPopulatePiece) {
      size_t n = std::min(kPopulatePiece, len - off);
      r = ::madvise(static_cast<char*>(mem) + off, n, MADV_POPULATE_WRITE);
      populated->store(r == 0 ? off + n : len, std::memory_order_release);  // never a waiter left
    }
  } else {
    r = ::madvise(mem, len, MADV_POPULATE_WRITE);
  }
  if (r == 0 && c == 'd') {
    int fd = ::open(file.c_str(), O_RDONLY);
    r = read_exact(fd, {static_cast<std::byte*>(mem), len}, file.string()).ok() ? 0 : -1;
  }
  if (::write(ack, &r, sizeof r) != sizeof r) _exit(1);
  for (;;) ::pause();
}

Sink spawn_sink(const fs::path& file, size_t len, bool thp) {
  int to[2], from[2];
  if (::pipe2(to, O_CLOEXEC) < 0 || ::pipe2(from, O_CLOEXEC) < 0) die("pipe failed");
  void* shared = ::mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) die("mmap failed");
  auto* populated = new (shared) std::atomic<uint64_t>(0);
  pid_t pid = ::fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) sink_main(file, len, thp, to[0], from[1], populated);
  ::close(to[0]);
  ::close(from[1]);
  Sink s{pid, 0, to[1], from[0], populated};
  if (::read(s.ack, &s.addr, sizeof s.addr) != sizeof s.addr) die("the sink did not start", pid);
  return s;
}

void tell_sink(const Sink& sink, char what) {
  if (::write(sink.cmd, &what, 1) != 1) die("the sink is gone", sink.pid);
}

void wait_sink(const Sink& sink) {
  int r = -1;
  if (::read(sink.ack, &r, sizeof r) != sizeof r || r != 0)
    die("the sink failed to populate or read its memory", sink.pid);
}

void ask_sink(const Sink& sink, char what) {
  tell_sink(sink, what);
  wait_sink(sink);
}

// The file read into `buf` piece by piece and written into the sink's mapping; with `ready`, each
// piece only once the sink has populated that far.
void copy_into_sink(const fs::path& file, size_t len, const Sink& sink, std::span<char> buf,
                    const std::atomic<uint64_t>* ready) {
  auto fd = check(open_file(file, O_RDONLY));
  for (size_t off = 0; off < len; off += buf.size()) {
    size_t n = std::min(buf.size(), len - off);
    check(read_exact(fd.get(), {reinterpret_cast<std::byte*>(buf.data()), n}, file.string()));
    while (ready && ready->load(std::memory_order_acquire) < off + n) ::sched_yield();
    iovec local{buf.data(), n}, remote{reinterpret_cast<void*>(sink.addr + off), n};
    if (::process_vm_writev(sink.pid, &local, 1, &remote, 1, 0) != ssize_t(n))
      die(fmt::format("process_vm_writev pid {}: {}", sink.pid, std::strerror(errno)), sink.pid);
  }
}

void end_sink(const Sink& sink) {
  ::close(sink.cmd);
  ::close(sink.ack);
  ::munmap(sink.populated, sizeof(*sink.populated));
  ::kill(sink.pid, SIGKILL);
  reap(sink.pid, SIGKILL);
}

struct RawFill {
  double populate, total;
};

RawFill raw_fill(const fs::path& file, size_t len, bool thp, std::span<char> buf) {
  Sink sink = spawn_sink(file, len, thp);
  settle(len);
  auto start = Clock::now();
  ask_sink(sink, 'p');
  RawFill out{seconds_since(start), 0};
  copy_into_sink(file, len, sink, buf, nullptr);
  out.total = seconds_since(start);
  end_sink(sink);
  return out;
}

double raw_overlap(const fs::path& file, size_t len, bool thp, std::span<char> buf) {
  Sink sink = spawn_sink(file, len, thp);
  settle(len);
  auto start = Clock::now();
  tell_sink(sink, 'o');
  copy_into_sink(file, len, sink, buf, sink.populated);
  wait_sink(sink);
  double s = seconds_since(start);
  end_sink(sink);
  return s;
}

double raw_direct(const fs::path& file, size_t len, bool thp) {
  Sink sink = spawn_sink(file, len, thp);
  settle(len);
  auto start = Clock::now();
  ask_sink(sink, 'd');
  double s = seconds_since(start);
  end_sink(sink);
  return s;
}

// ---- checking the restored process ----

void verify_sample(const Target& t, pid_t pid) {
  std::vector<uint64_t> page(kPage / 8);
  size_t pages = t.len / kPage;
  std::vector<size_t> sample;
  for (size_t p = 0; p < pages; p += kSampleStride) sample.push_back(p);
  sample.push_back(pages - 1);
  for (size_t p : sample) {
    iovec local{page.data(), kPage}, remote{reinterpret_cast<void*>(t.addr + p * kPage), kPage};
    if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) != ssize_t(kPage))
      die(fmt::format("restored pid {}: cannot read {:#x}: {}", pid, t.addr + p * kPage,
                      std::strerror(errno)),
          pid);
    for (size_t i = 0; i < page.size(); ++i) {
      uint64_t index = p * (kPage / 8) + i;
      if (page[i] != word_at(index))
        die(fmt::format("restored pid {}: word at {:#x} is {:#x}, expected {:#x}", pid,
                        t.addr + index * 8, page[i], word_at(index)),
            pid);
    }
  }
}

void finish_restored(pid_t pid) {
  ::kill(pid, SIGUSR1);
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) die(fmt::format("waitpid {} failed", pid));
  if (WIFEXITED(st) && WEXITSTATUS(st) == kBadMemoryExit)
    die(fmt::format("restored pid {} found wrong words in its own memory", pid));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die(fmt::format("restored pid {} ended with status {:#x} instead of exiting 0", pid, st));
}

// ---- one repetition ----

struct Sample {
  double raw_dump_vm, raw_dump_mem, raw_dump_pipe, raw_dump, dump, frozen, raw_read, raw_fill,
      raw_populate, raw_direct, raw_overlap, restore, restore_took;
  double verify, section_read;
  double teardown;     // SIGKILL of the target until it is reaped (leave-running runs only)
  bool leave_running;  // the engine's dump let the target go on (else it killed and reaped it)
};

// The parts of a restore that do not touch the target, timed on their own.
void time_store_reads(const image::Store& store, const image::GenerationInfo& gen, Sample& s,
                      HugeVector<char>& buf) {
  auto start = Clock::now();
  check(store.verify(gen));
  s.verify = seconds_since(start);
  start = Clock::now();
  auto reader = check(store.open_section(gen, memory::kPagesSection));
  while (check(reader->read({reinterpret_cast<std::byte*>(buf.data()), buf.size()})) > 0) {
  }
  s.section_read = seconds_since(start);
}

// Each raw way writes a file of its own, kept until the run ends, as the engine's image is (the
// restore's raw ways read the process_vm_readv one, `raw`). On this VM's disk a write into blocks
// the host had never backed ran at 350 MB/s and one into blocks just freed at 2 GB/s: rewriting
// one file three times gave the second and third ways the first one's blocks and the engine,
// writing beside it, fresh ones (a baseline 3-5x faster than any dump could be).
fs::path way_file(const fs::path& raw, std::string_view way) {
  return raw.string() + "." + std::string(way);
}

// The readers take turns at going first. settle() gives each the same memory to start with.
void raw_dumps(const Target& t, const fs::path& raw, HugeVector<char>& buf, bool vm_first,
               Sample& s) {
  fs::path mem = way_file(raw, "mem"), pipe = way_file(raw, "pipe");
  if (vm_first) s.raw_dump_vm = raw_dump_with(t, raw, buf, Reader::vm_readv);
  if (!vm_first) s.raw_dump_pipe = raw_dump_pipelined(t, pipe, buf);
  s.raw_dump_mem = raw_dump_with(t, mem, buf, Reader::proc_mem);
  if (vm_first) s.raw_dump_pipe = raw_dump_pipelined(t, pipe, buf);
  if (!vm_first) s.raw_dump_vm = raw_dump_with(t, raw, buf, Reader::vm_readv);
  s.raw_dump = std::min({s.raw_dump_vm, s.raw_dump_mem, s.raw_dump_pipe});
}

// After a leave-running dump the target's pages are still marked shared with the snapshot that
// is gone, and process_vm_readv pins each page it reads, which makes the kernel fault every page
// back to exclusive first (gup_must_unshare): the first raw pass after it took 1.0-1.4 s for
// 1 GiB instead of 0.23-0.48 (2026-12-04). One untimed pass does that for all of them.
void make_exclusive(const Target& t, HugeVector<char>& buf) {
  std::optional<proc::MemFile> none;
  for (size_t off = 0; off < t.len; off += buf.size())
    read_piece(t, none, buf.data(), off, std::min(buf.size(), t.len - off));
}

// dump_process() of the target after settle(); `took` gets its time.
DumpResult timed_dump(const Target& t, image::Store& store, bool leave_running, double& took) {
  DumpOptions opts;
  opts.pid = t.pid;
  opts.leave_running = leave_running;
  settle(t.len);
  auto start = Clock::now();
  auto dumped = check(dump_process(store, opts), t.pid);
  took = seconds_since(start);
  return dumped;
}

// Who goes first matters: on a disk each 1 GiB written after another went slower (the 4th of
// four in a row took up to twice as long as the 1st), so a leave-running dump goes before the raw
// ones and a killing one, which must come last, after them.
void dump_both(const Target& t, const fs::path& raw, image::Store& store, bool leave_running,
               Sample& s, image::GenerationInfo& gen, HugeVector<char>& buf) {
  if (!leave_running) raw_dumps(t, raw, buf, true, s);
  auto dumped = timed_dump(t, store, leave_running, s.dump);
  s.leave_running = leave_running;
  s.frozen = secs(dumped.frozen);
  gen = dumped.generation;
  if (!leave_running) {
    reap(t.pid, SIGKILL);  // at once: the restore needs the PID back
    return;
  }
  make_exclusive(t, buf);
  raw_dumps(t, raw, buf, false, s);
  auto start = Clock::now();
  ::kill(t.pid, SIGKILL);
  reap(t.pid, SIGKILL);
  s.teardown = seconds_since(start);
}

void restore_engine(const Target& t, const image::Store& store, Sample& s) {
  settle(t.len);
  auto start = Clock::now();
  auto restored = check(restore_process(store, RestoreOptions{}));
  s.restore = seconds_since(start);
  s.restore_took = secs(restored.took);
  if (restored.pid != t.pid) die(fmt::format("restored as pid {}, not {}", restored.pid, t.pid));
  verify_sample(t, restored.pid);
  finish_restored(restored.pid);
}

// The ways through a buffer are timed with the engine's buffer size (one huge page: it stays in
// the cache between the read and the write) and with the 8 MiB one, and the faster counts.
void restore_raw(const Target& t, const fs::path& raw, bool thp, Sample& s, HugeVector<char>& buf) {
  s.raw_read = raw_read_fresh(raw, t.len, thp);
  s.raw_fill = s.raw_overlap = 1e9;
  for (size_t size : {kFillChunk, buf.size()}) {
    std::span<char> chunk(buf.data(), size);
    auto fill = raw_fill(raw, t.len, thp, chunk);
    if (fill.total < s.raw_fill) s.raw_populate = fill.populate;
    s.raw_fill = std::min(s.raw_fill, fill.total);
    s.raw_overlap = std::min(s.raw_overlap, raw_overlap(raw, t.len, thp, chunk));
  }
  s.raw_direct = raw_direct(raw, t.len, thp);
}

// Odd runs dump leaving the target running and restore with the engine first; even runs kill it
// and restore the raw ways first.
Sample run_once(const fs::path& exe, const fs::path& dir, image::Store& store, uint64_t mib,
                bool thp, bool odd, HugeVector<char>& buf) {
  Sample s{};
  Target t = spawn_target(exe, mib, thp);
  fs::path raw = dir / fmt::format("ckpt-engine-bench-{}.raw", ::getpid());
  image::GenerationInfo gen;
  dump_both(t, raw, store, odd, s, gen, buf);
  if (odd) {
    restore_engine(t, store, s);
    restore_raw(t, raw, thp, s, buf);
  } else {
    restore_raw(t, raw, thp, s, buf);
    restore_engine(t, store, s);
  }
  for (const fs::path& f : {raw, way_file(raw, "mem"), way_file(raw, "pipe")}) fs::remove(f);
  time_store_reads(store, gen, s, buf);
  fs::remove_all(gen.path);
  return s;
}

// A leave-running dump and the raw write (process_vm_readv into two buffers, the write on a
// second thread: the fastest way to a disk) in turns, each right after the other's output was
// deleted, so that every write finds the blocks the one before freed. On this VM's disk (mounted
// with discard; the host backs only blocks written since) a write into blocks freed seconds
// before ran at ~2 GB/s and one into blocks the host no longer backs at ~350 MB/s: in run_once
// the one writing first after the last run's deletes wins, dump or raw alike.
struct Pair {
  double dump = 0, raw = 0;
};

std::vector<Pair> dump_and_raw_in_turns(const fs::path& exe, const fs::path& dir,
                                        image::Store& store, uint64_t mib, bool thp, int n,
                                        HugeVector<char>& buf) {
  Target t = spawn_target(exe, mib, thp);
  fs::path raw = dir / fmt::format("ckpt-engine-bench-{}.turn", ::getpid());
  std::vector<Pair> out;
  for (int i = 0; i < n; ++i) {
    Pair p;
    fs::remove_all(timed_dump(t, store, true, p.dump).generation.path);
    make_exclusive(t, buf);
    p.raw = raw_dump_pipelined(t, raw, buf);
    fs::remove(raw);
    std::printf("%4lu MiB %-9s turn %d: dump (leave-running) %.0f ms, raw %.0f ms\n", mib,
                dir.c_str(), i + 1, p.dump * 1e3, p.raw * 1e3);
    std::fflush(stdout);
    out.push_back(p);
  }
  ::kill(t.pid, SIGKILL);
  reap(t.pid, SIGKILL);
  return out;
}

// ---- reporting ----

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double med(const std::vector<Sample>& runs, double Sample::*field) {
  std::vector<double> v;
  for (auto& r : runs) v.push_back(r.*field);
  return median(v);
}

// The median over the runs whose dump did (or did not) leave the target running; 0 for none.
double med_where(const std::vector<Sample>& runs, double Sample::*field, bool leave_running) {
  std::vector<double> v;
  for (auto& r : runs)
    if (r.leave_running == leave_running) v.push_back(r.*field);
  return v.empty() ? 0 : median(v);
}

// The raw dump to compare a dump's median with: each way's median, the fastest of them. The
// fastest way within each run would be the best of three draws against the dump's one where the
// disk's speed jumps from one write to the next (this VM's disk: 0.5-3 s for the same GiB).
constexpr std::array kRawDumpWays = {&Sample::raw_dump_vm, &Sample::raw_dump_mem,
                                     &Sample::raw_dump_pipe};
double raw_dump_median(const std::vector<Sample>& runs) {
  double out = 1e18;
  for (auto way : kRawDumpWays) out = std::min(out, med(runs, way));
  return out;
}
double raw_dump_median_where(const std::vector<Sample>& runs, bool leave_running) {
  double out = 1e18;
  for (auto way : kRawDumpWays) out = std::min(out, med_where(runs, way, leave_running));
  return out;
}

// The fastest run: on a loaded machine the least disturbed one.
double best(const std::vector<Sample>& runs, double Sample::*field) {
  double b = runs.at(0).*field;
  for (auto& r : runs) b = std::min(b, r.*field);
  return b;
}

struct Row {
  uint64_t mib;
  std::string dir;
  std::vector<Sample> runs;
  std::vector<Pair> turns;
};

void print_tables(const std::vector<Row>& rows) {
  auto mbs = [](uint64_t mib, double s) { return double(mib << 20) / 1e6 / s; };
  std::printf("\nDUMP (median of %zu)\n", rows.empty() ? 0 : rows[0].runs.size());
  std::printf("%6s %-9s %9s %8s %10s | %9s %8s | %6s %6s\n", "MiB", "dir", "dump ms", "MB/s",
              "frozen ms", "raw ms", "raw MB/s", "ratio", "best");
  for (auto& r : rows) {
    double d = med(r.runs, &Sample::dump), raw = raw_dump_median(r.runs);
    double best_ratio = best(r.runs, &Sample::raw_dump) / best(r.runs, &Sample::dump);
    std::printf("%6lu %-9s %9.1f %8.0f %10.1f | %9.1f %8.0f | %5.0f%% %5.0f%%\n", r.mib,
                r.dir.c_str(), d * 1e3, mbs(r.mib, d), med(r.runs, &Sample::frozen) * 1e3,
                raw * 1e3, mbs(r.mib, raw), 100 * raw / d, 100 * best_ratio);
  }
  // A dump that kills returns once the target is dead, after the kernel tore its memory down;
  // the fastest raw way to the same end is the raw copy and then the kill of the target, whose
  // teardown is timed where the bench kills it itself (the leave-running runs).
  std::printf(
      "\nDUMP by kind (medians: leave-running dumps copy from a snapshot while the target runs; "
      "killing ones copy from the stopped target, then kill it and wait for its end: their raw "
      "way is the raw copy + the teardown, SIGKILL until reaped)\n");
  std::printf("%6s %-9s %9s %9s %6s | %9s %9s %9s %6s\n", "MiB", "dir", "leave ms", "raw ms",
              "ratio", "kill ms", "raw ms", "teardown", "ratio");
  for (auto& r : rows) {
    double ld = med_where(r.runs, &Sample::dump, true), lr = raw_dump_median_where(r.runs, true);
    double kd = med_where(r.runs, &Sample::dump, false), kr = raw_dump_median_where(r.runs, false),
           td = med_where(r.runs, &Sample::teardown, true);
    std::printf("%6lu %-9s %9.1f %9.1f %5.0f%% | %9.1f %9.1f %9.1f %5.0f%%\n", r.mib, r.dir.c_str(),
                ld * 1e3, lr * 1e3, ld > 0 ? 100 * lr / ld : 0, kd * 1e3, kr * 1e3, td * 1e3,
                kd > 0 ? 100 * (kr + td) / kd : 0);
  }
  std::printf(
      "\nDUMP AND RAW WRITE IN TURNS (leave-running dump, then the raw write on a 2nd thread, "
      "each right after the other's output was deleted: both find the blocks just freed; "
      "medians)\n");
  std::printf("%6s %-9s %6s %9s %9s %6s\n", "MiB", "dir", "turns", "dump ms", "raw ms", "ratio");
  for (auto& r : rows) {
    if (r.turns.empty()) continue;
    std::vector<double> d, w;
    for (auto& p : r.turns) d.push_back(p.dump), w.push_back(p.raw);
    double dm = median(d), wm = median(w);
    std::printf("%6lu %-9s %6zu %9.1f %9.1f %5.0f%%\n", r.mib, r.dir.c_str(), r.turns.size(),
                dm * 1e3, wm * 1e3, 100 * wm / dm);
  }
  std::printf(
      "\nRESTORE (raw: read = read() into fresh memory, fill = populate + read + "
      "process_vm_writev, direct = populate + read() inside the process, overlap = fill with the "
      "populate in step; MB/s)\n");
  std::printf("%6s %-9s %9s %8s %8s | %6s %6s %6s %7s %8s | %6s %6s\n", "MiB", "dir", "rest. ms",
              "MB/s", "took ms", "read", "fill", "direct", "overlap", "popul.ms", "ratio", "best");
  for (auto& r : rows) {
    double rs = med(r.runs, &Sample::restore), rd = med(r.runs, &Sample::raw_read),
           rf = med(r.runs, &Sample::raw_fill), rx = med(r.runs, &Sample::raw_direct),
           ro = med(r.runs, &Sample::raw_overlap);
    double best_raw =
        std::min({best(r.runs, &Sample::raw_read), best(r.runs, &Sample::raw_fill),
                  best(r.runs, &Sample::raw_direct), best(r.runs, &Sample::raw_overlap)});
    std::printf("%6lu %-9s %9.1f %8.0f %8.1f | %6.0f %6.0f %6.0f %7.0f %8.1f | %5.0f%% %5.0f%%\n",
                r.mib, r.dir.c_str(), rs * 1e3, mbs(r.mib, rs),
                med(r.runs, &Sample::restore_took) * 1e3, mbs(r.mib, rd), mbs(r.mib, rf),
                mbs(r.mib, rx), mbs(r.mib, ro), med(r.runs, &Sample::raw_populate) * 1e3,
                100 * std::min({rd, rf, rx, ro}) / rs,
                100 * best_raw / best(r.runs, &Sample::restore));
  }
  std::printf(
      "\nSTORE PASSES timed separately (restore reads the section once, checking as it copies; "
      "verify only after a failed restore)\n");
  std::printf("%6s %-9s %12s %16s\n", "MiB", "dir", "verify ms", "section read ms");
  for (auto& r : rows)
    std::printf("%6lu %-9s %12.1f %16.1f\n", r.mib, r.dir.c_str(),
                med(r.runs, &Sample::verify) * 1e3, med(r.runs, &Sample::section_read) * 1e3);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

struct Options {
  std::vector<uint64_t> sizes = {64, 1024};
  std::vector<std::string> dirs = {"/dev/shm", "/var/tmp"};
  int repeat = 3;
  int turns = 4;
  bool thp = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--thp") {
      o.thp = true;
    } else if (a == "--sizes" && has_value) {
      o.sizes.clear();
      for (auto& s : split(argv[++i])) o.sizes.push_back(std::stoull(s));
    } else if (a == "--dirs" && has_value) {
      o.dirs = split(argv[++i]);
    } else if (a == "--repeat" && has_value) {
      o.repeat = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--turns" && has_value) {
      o.turns = std::max(0, std::atoi(argv[++i]));
    } else {
      die("usage: engine_bench [--sizes MIB,...] [--dirs DIR,...] [--repeat N] [--turns N] "
          "[--thp]");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--target")
    return target_main(std::stoull(argv[2]), argv[3][0] == '1');
  Options o = parse(argc, argv);
  HugeVector<char> buf(kBuffer);  // huge pages: the fastest buffer there is (common/populate.hpp)
  fs::path exe = make_target_exe();
  std::vector<Row> rows;
  for (auto& dir : o.dirs) {
    fs::path store_dir = fs::path(dir) / fmt::format("ckpt-engine-bench-{}", ::getpid());
    auto store = check(image::Store::open(store_dir, {.create = true}));
    for (uint64_t mib : o.sizes) {
      Row row{mib, dir, {}, {}};
      for (int i = 0; i < o.repeat; ++i) {
        row.runs.push_back(run_once(exe, dir, store, mib, o.thp, i % 2 == 1, buf));
        auto& s = row.runs.back();
        std::printf(
            "%4lu MiB %-9s run %d: dump (%s) %.0f ms (raw %.0f: process_vm_readv %.0f, "
            "/proc/PID/mem %.0f, write on a 2nd thread %.0f), restore %.0f ms (raw read %.0f, fill "
            "%.0f, direct %.0f, overlap "
            "%.0f)\n",
            mib, dir.c_str(), i + 1, s.leave_running ? "leave-running" : "killing", s.dump * 1e3,
            s.raw_dump * 1e3, s.raw_dump_vm * 1e3, s.raw_dump_mem * 1e3, s.raw_dump_pipe * 1e3,
            s.restore * 1e3, s.raw_read * 1e3, s.raw_fill * 1e3, s.raw_direct * 1e3,
            s.raw_overlap * 1e3);
        std::fflush(stdout);
      }
      if (o.turns > 0) row.turns = dump_and_raw_in_turns(exe, dir, store, mib, o.thp, o.turns, buf);
      rows.push_back(std::move(row));
    }
    fs::remove_all(store_dir);
  }
  fs::remove(exe);
  print_tables(rows);
  return 0;
}
