// Writes one generation into a store and exits; the crash test kills it at chosen moments.
// Usage: crash_writer STORE SEED SIZE_KIB [zstd]
// Section contents derive from SEED so the test can check what a published generation holds.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "image/store.hpp"
#include "store_test_util.hpp"

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  using namespace ckpt::image;
  auto seed = static_cast<uint32_t>(std::atoi(argv[2]));
  size_t size = static_cast<size_t>(std::atol(argv[3])) * 1024;
  WriteOptions opts;
  if (argc > 4 && std::string(argv[4]) == "zstd") opts.compression = Compression::zstd;
  auto store = Store::open(argv[1]);
  if (!store.ok()) return std::fprintf(stderr, "%s\n", store.error().message.c_str()), 1;
  auto w = store->begin_generation(opts);
  if (!w.ok()) return std::fprintf(stderr, "%s\n", w.error().message.c_str()), 1;
  (*w)->set_label("seed", std::to_string(seed));
  auto data = ckpt::test::content(size, seed);
  auto s = (*w)->begin_section("memory");
  if (!s.ok()) return 1;
  for (size_t off = 0; off < data.size(); off += 256 * 1024) {
    size_t n = std::min<size_t>(256 * 1024, data.size() - off);
    if (!(*s)->write(std::span(data).subspan(off, n)).ok()) return 1;
  }
  if (!(*s)->finish().ok()) return 1;
  if (!(*w)->write_section("regs", ckpt::test::content(200, seed + 1)).ok()) return 1;
  auto gen = (*w)->commit();
  if (!gen.ok()) return std::fprintf(stderr, "%s\n", gen.error().message.c_str()), 1;
  std::printf("%s\n", gen->id.c_str());
  return 0;
}
