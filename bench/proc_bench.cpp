// /proc readers on a process with a 1 GiB touched mapping: maps vs smaps (smaps walks page
// tables for Rss), and PAGEMAP_SCAN vs reading pagemap entries.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include <benchmark/benchmark.h>

#include "proc/maps.hpp"
#include "proc/pagemap.hpp"

namespace {

constexpr size_t kGiB = size_t{1} << 30;

// One 1 GiB mapping, every page touched, kept for the whole run.
struct Touched {
  Touched() {
    mem = static_cast<char*>(
        mmap(nullptr, kGiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    // Huge pages would make the page-table walks unrepresentatively short.
    madvise(mem, kGiB, MADV_NOHUGEPAGE);
    std::memset(mem, 1, kGiB);
  }
  ~Touched() { munmap(mem, kGiB); }
  char* mem;
};

Touched& touched() {
  static Touched t;
  return t;
}

void BM_ReadMaps(benchmark::State& state) {
  touched();
  for (auto _ : state) benchmark::DoNotOptimize(ckpt::proc::read_maps(getpid()));
}
BENCHMARK(BM_ReadMaps)->Unit(benchmark::kMicrosecond);

void BM_ReadSmaps(benchmark::State& state) {
  touched();
  for (auto _ : state) benchmark::DoNotOptimize(ckpt::proc::read_smaps(getpid()));
}
BENCHMARK(BM_ReadSmaps)->Unit(benchmark::kMicrosecond);

void BM_PagemapScanIoctl(benchmark::State& state) {
  auto base = reinterpret_cast<uint64_t>(touched().mem);
  auto pm = ckpt::proc::Pagemap::open(getpid());
  for (auto _ : state)
    benchmark::DoNotOptimize(
        pm->scan_ioctl(base, base + kGiB, ckpt::proc::PageFilter::private_anon));
}
BENCHMARK(BM_PagemapScanIoctl)->Unit(benchmark::kMicrosecond);

void BM_PagemapRead(benchmark::State& state) {
  auto base = reinterpret_cast<uint64_t>(touched().mem);
  auto pm = ckpt::proc::Pagemap::open(getpid());
  for (auto _ : state)
    benchmark::DoNotOptimize(
        pm->scan_read(base, base + kGiB, ckpt::proc::PageFilter::private_anon));
}
BENCHMARK(BM_PagemapRead)->Unit(benchmark::kMicrosecond);

// 8 GiB reserved, 16 pages touched: the ioctl skips empty page tables, reading cannot.
void BM_PagemapSparse(benchmark::State& state) {
  constexpr size_t kSize = 8 * kGiB;
  auto* mem = static_cast<char*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  for (size_t i = 0; i < 16; ++i) mem[i * (kSize / 16)] = 1;
  auto base = reinterpret_cast<uint64_t>(mem);
  auto pm = ckpt::proc::Pagemap::open(getpid());
  for (auto _ : state) {
    auto r = state.range(0)
                 ? pm->scan_ioctl(base, base + kSize, ckpt::proc::PageFilter::private_anon)
                 : pm->scan_read(base, base + kSize, ckpt::proc::PageFilter::private_anon);
    if (!r || r->size() != 16) state.SkipWithError("wrong ranges");
  }
  munmap(mem, kSize);
}
BENCHMARK(BM_PagemapSparse)->Arg(1)->Arg(0)->ArgName("ioctl")->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
