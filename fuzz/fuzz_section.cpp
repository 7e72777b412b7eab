// Feeds arbitrary stored bytes to the section reader, with a manifest whose checksum matches so
// that the reader gets past the checksum into decompression and size checks. The first input
// byte picks the compression and the recorded raw size.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "common/checksum.hpp"
#include "common/fs_util.hpp"
#include "image/format.hpp"
#include "image/store.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ckpt;
using namespace ckpt::image;

const fs::path& work_dir() {
  static const fs::path dir = [] {
    // tmpfs: the fsyncs of write_file_atomic cost nothing there.
    char tmpl[] = "/dev/shm/ckpt-fuzz-section-XXXXXX";
    return fs::path(mkdtemp(tmpl));
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto stored = std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  GenerationInfo gen;
  gen.writer_version = "fuzz";
  SectionMeta s;
  s.name = "s";
  s.file = std::string(format::kDataName);
  s.offset = format::kDataHeaderSize;
  s.stored_size = stored.size();
  s.compression = data[0] & 1 ? Compression::zstd : Compression::none;
  s.raw_size = s.compression == Compression::zstd ? (data[0] >> 1) * 1000u : stored.size();
  s.checksum = checksum64(stored);
  gen.sections.push_back(s);
  gen.files.push_back({s.file, s.offset + stored.size()});
  auto file = format::data_header();
  file.insert(file.end(), stored.begin(), stored.end());
  const fs::path& dir = work_dir();
  if (!write_file_atomic(dir, "data", file).ok()) return 0;
  if (!write_file_atomic(dir, "manifest", format::encode_manifest(gen)).ok()) return 0;
  auto read = read_generation(dir);
  if (!read.ok()) __builtin_trap();  // a manifest the writer produced must read back
  if (!verify_generation(*read).ok()) __builtin_trap();
  auto reader = open_generation_section(*read, "s");
  if (!reader.ok()) return 0;
  std::vector<std::byte> buf(4096);
  uint64_t total = 0;
  for (;;) {
    auto n = (*reader)->read(buf);
    if (!n.ok() || *n == 0) break;
    total += *n;
    if (total > s.raw_size) __builtin_trap();  // the reader must stop at the recorded size
  }
  return 0;
}
