// Store throughput against the raw speed of the same directory, measured in the same run.
//
//   store_bench [--dir DIR] [--sizes MIB,MIB,...]     (default: the current directory, 64,1024)
//
// For each size: a plain file written with 4 MiB write()s and fsynced (the machine's own limit),
// then a generation with one section of that size, uncompressed and with zstd level 1, through
// Store (including the commit's fsyncs). Reads go through SectionReader (checksum and
// decompression included) against a plain read of the raw file; all reads are from the page cache
// (the data was just written), so they measure the CPU cost of the store. The data is
// process-like: a third zero pages, a third random, a third repetitive text.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/fs_util.hpp"
#include "image/store.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ckpt;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = size_t{4} << 20;
constexpr size_t kPattern = size_t{64} << 20;

std::vector<std::byte> make_pattern() {
  std::vector<std::byte> v(kPattern);
  std::mt19937_64 rng(1);
  const char text[] = "ckpt checkpoint store benchmark: process memory looks a bit like this. ";
  for (size_t page = 0; page < kPattern / 4096; ++page) {
    std::byte* p = v.data() + page * 4096;
    if (page % 3 == 1) {
      for (size_t i = 0; i < 4096; i += 8) {
        uint64_t r = rng();
        std::memcpy(p + i, &r, 8);
      }
    } else if (page % 3 == 2) {
      for (size_t i = 0; i < 4096; ++i) p[i] = static_cast<std::byte>(text[i % (sizeof text - 1)]);
    }
  }
  return v;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double mbps(uint64_t bytes, double secs) {
  return static_cast<double>(bytes) / 1e6 / secs;
}

template <typename F>
void each_chunk(uint64_t total, const std::vector<std::byte>& pat, F&& f) {
  for (uint64_t off = 0; off < total; off += kChunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, total - off));
    f(std::span(pat).subspan(static_cast<size_t>(off % kPattern), n));
  }
}

struct Raw {
  double write_s, read_s;
};

Raw raw_speed(const fs::path& dir, uint64_t total, const std::vector<std::byte>& pat) {
  auto path = dir / "raw.bin";
  ::sync();  // neither timed write pays for the writeback of earlier runs
  auto t = Clock::now();
  {
    auto fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!fd.ok()) std::fprintf(stderr, "%s\n", fd.error().message.c_str()), std::exit(1);
    each_chunk(total, pat, [&](auto s) { (void)write_all(fd->get(), s, path.string()); });
    (void)fsync_fd(fd->get(), path.string());
  }
  Raw r{seconds_since(t), 0};
  std::vector<std::byte> buf(kChunk);
  t = Clock::now();
  auto fd = open_file(path, O_RDONLY);
  while (::read(fd->get(), buf.data(), buf.size()) > 0) {
  }
  r.read_s = seconds_since(t);
  fs::remove(path);
  return r;
}

struct StoreRun {
  double write_s, read_s;
  uint64_t stored;
};

StoreRun store_speed(image::Store& store, uint64_t total, image::Compression c,
                     const std::vector<std::byte>& pat) {
  ::sync();
  auto t = Clock::now();
  auto w = store.begin_generation({.compression = c});
  if (!w.ok()) std::fprintf(stderr, "%s\n", w.error().message.c_str()), std::exit(1);
  auto s = (*w)->begin_section("memory");
  each_chunk(total, pat, [&](auto span) { (void)(*s)->write(span); });
  (void)(*s)->finish();
  auto gen = (*w)->commit();
  if (!gen.ok()) std::fprintf(stderr, "%s\n", gen.error().message.c_str()), std::exit(1);
  StoreRun r{seconds_since(t), 0, gen->sections[0].stored_size};
  std::vector<std::byte> buf(kChunk);
  t = Clock::now();
  auto reader = store.open_section(*gen, "memory");
  uint64_t got = 0;
  for (;;) {
    auto n = (*reader)->read(buf);
    if (!n.ok()) std::fprintf(stderr, "%s\n", n.error().message.c_str()), std::exit(1);
    if (*n == 0) break;
    got += *n;
  }
  r.read_s = seconds_since(t);
  if (got != total) std::fprintf(stderr, "read %lu of %lu bytes\n", got, total), std::exit(1);
  fs::remove_all(gen->path);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::current_path();
  std::vector<uint64_t> sizes = {64, 1024};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--sizes") {
      sizes.clear();
      for (std::string s = argv[i + 1]; !s.empty();) {
        sizes.push_back(std::stoull(s));
        auto comma = s.find(',');
        s = comma == std::string::npos ? "" : s.substr(comma + 1);
      }
    }
  }
  auto bench_dir = dir / fmt::format("ckpt-store-bench-{}", getpid());
  auto store = image::Store::open(bench_dir, {.create = true});
  if (!store.ok()) return std::fprintf(stderr, "%s\n", store.error().message.c_str()), 1;
  auto pat = make_pattern();
  std::printf("directory %s\n", dir.c_str());
  std::printf("%-6s %-5s %12s %12s %8s %12s %12s %8s %7s\n", "size", "comp", "raw write",
              "store write", "ratio", "raw read", "store read", "ratio", "stored");
  for (uint64_t mib : sizes) {
    uint64_t total = mib << 20;
    for (auto c : {image::Compression::none, image::Compression::zstd}) {
      // The raw speed is measured right before each store run, so both see the same disk state.
      Raw raw = raw_speed(bench_dir, total, pat);
      StoreRun s = store_speed(*store, total, c, pat);
      std::printf("%4luMi %-5s %7.0f MB/s %7.0f MB/s %8.2f %7.0f MB/s %7.0f MB/s %8.2f %6.1f%%\n",
                  mib, c == image::Compression::zstd ? "zstd" : "none", mbps(total, raw.write_s),
                  mbps(total, s.write_s), raw.write_s / s.write_s, mbps(total, raw.read_s),
                  mbps(total, s.read_s), raw.read_s / s.read_s,
                  100.0 * static_cast<double>(s.stored) / static_cast<double>(total));
      std::fflush(stdout);
    }
  }
  fs::remove_all(bench_dir);
  return 0;
}
