// Bad input: every damaged image is reported with the file and the cause, and never taken for a
// good one.
#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "common/checksum.hpp"
#include "common/fs_util.hpp"
#include "image/format.hpp"
#include "image/store.hpp"
#include "image_test_util.hpp"

namespace ckpt::image {
namespace {

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

struct TwoGens {
  TempDir dir;
  Store store = open_store(dir.path());
  GenerationInfo old_gen =
      write_gen(store, {{"mem", pattern(50000, 1)}, {"regs", pattern(300, 2)}});
  GenerationInfo new_gen =
      write_gen(store, {{"mem", pattern(50000, 3)}, {"regs", pattern(300, 4)}});
};

TEST(ImageCorrupt, EveryFlippedManifestByteIsDetected) {
  TwoGens s;
  auto path = s.new_gen.path / "manifest";
  auto size = fs::file_size(path);
  for (uint64_t off = 0; off < size; ++off) {
    flip_byte(path, off);
    auto gen = read_generation(s.new_gen.path);
    ASSERT_FALSE(gen.ok()) << "flip at " << off;
    EXPECT_TRUE(contains(gen.error().message, path.string())) << gen.error().message;
    flip_byte(path, off);
  }
  EXPECT_TRUE(read_generation(s.new_gen.path).ok());
}

TEST(ImageCorrupt, FlippedDataBytesAreNamedBySectionFileAndOffset) {
  TwoGens s;
  auto data = s.new_gen.path / "data";
  const SectionMeta* regs = s.new_gen.find_section("regs");
  ASSERT_NE(regs, nullptr);
  flip_byte(data, regs->offset + 17);
  Status st = s.store.verify(s.new_gen);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message,
            fmt::format("gen {}: section 'regs' in {} at offset {}: checksum mismatch",
                        s.new_gen.id, data.string(), regs->offset));
  // The reader refuses it too, and latest_valid() falls back to the older generation.
  EXPECT_FALSE(s.store.read_section(s.new_gen, "regs").ok());
  std::vector<Problem> skipped;
  auto latest = s.store.latest_valid(&skipped);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->id, s.old_gen.id);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].id, s.new_gen.id);
  EXPECT_TRUE(contains(skipped[0].message, "checksum mismatch"));
}

TEST(ImageCorrupt, EveryFlippedDataByteIsDetected) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto gen = write_gen(store, {{"a", pattern(64, 1)}, {"b", pattern(64, 2)}}, Compression::zstd);
  auto data = gen.path / "data";
  auto size = fs::file_size(data);
  for (uint64_t off = 0; off < size; ++off) {
    flip_byte(data, off);
    EXPECT_FALSE(store.verify(gen).ok()) << "flip at " << off;
    flip_byte(data, off);
  }
  EXPECT_TRUE(store.verify(gen).ok());
}

TEST(ImageCorrupt, TruncatedAndExtendedDataFiles) {
  TwoGens s;
  auto data = s.new_gen.path / "data";
  auto size = fs::file_size(data);
  fs::resize_file(data, size - 1);
  Status st = s.store.verify(s.new_gen);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, data.string() + ": " + std::to_string(size - 1) +
                                               " bytes, the manifest says"));
  EXPECT_TRUE(contains(st.error().message, "truncated"));
  fs::resize_file(data, size + 5);
  st = s.store.verify(s.new_gen);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "trailing bytes"));
  EXPECT_EQ(s.store.latest_valid()->id, s.old_gen.id);
}

// Restore checks only sizes and headers up front and leaves the checksums to its streaming reads.
TEST(ImageCorrupt, FileCheckCatchesSizesAndHeadersButLeavesChecksumsToReaders) {
  TwoGens s;
  auto data = s.new_gen.path / "data";
  auto size = fs::file_size(data);
  const SectionMeta* mem = s.new_gen.find_section("mem");
  ASSERT_NE(mem, nullptr);
  flip_byte(data, mem->offset + 5);
  EXPECT_TRUE(verify_generation_files(s.new_gen).ok());
  auto reader = s.store.open_section(s.new_gen, "mem");
  ASSERT_TRUE(reader.ok());
  std::vector<std::byte> buf(mem->raw_size);
  Result<size_t> got = size_t{0};
  for (size_t done = 0; done < buf.size(); done += *got) {
    got = (*reader)->read(std::span(buf).subspan(done));
    if (!got.ok() || *got == 0) break;
  }
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().message, fmt::format("section 'mem' in {} at offset {}: checksum mismatch",
                                             data.string(), mem->offset));
  fs::resize_file(data, size + 1);
  Status st = verify_generation_files(s.new_gen);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "gen " + s.new_gen.id + ": " + data.string()))
      << st.error().message;
  flip_byte(data, 0);
  fs::resize_file(data, size);
  st = verify_generation_files(s.new_gen);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "bad data file header")) << st.error().message;
}

TEST(ImageCorrupt, TruncatedManifestAtEveryLength) {
  TwoGens s;
  auto path = s.new_gen.path / "manifest";
  auto bytes = *read_file(path);
  for (size_t n = 0; n < bytes.size(); n += 7) {
    ASSERT_TRUE(write_file_atomic(s.new_gen.path, "manifest", std::span(bytes).first(n)).ok());
    auto gen = read_generation(s.new_gen.path);
    ASSERT_FALSE(gen.ok()) << n;
    EXPECT_TRUE(contains(gen.error().message, path.string()));
  }
  std::vector<Problem> problems;
  EXPECT_EQ(s.store.list(&problems).size(), 1u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].id, s.new_gen.id);
}

TEST(ImageCorrupt, RandomBytesAsManifest) {
  TwoGens s;
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::vector<std::byte> junk(rng() % 300);
    for (auto& b : junk) b = static_cast<std::byte>(rng());
    ASSERT_TRUE(write_file_atomic(s.new_gen.path, "manifest", junk).ok());
    EXPECT_FALSE(read_generation(s.new_gen.path).ok());
  }
}

TEST(ImageCorrupt, WrongMagicAndNewerVersion) {
  TwoGens s;
  auto path = s.new_gen.path / "manifest";
  auto good = *read_file(path);
  auto bad = good;
  bad[0] = std::byte{'X'};
  ASSERT_TRUE(write_file_atomic(s.new_gen.path, "manifest", bad).ok());
  auto gen = read_generation(s.new_gen.path);
  ASSERT_FALSE(gen.ok());
  EXPECT_EQ(gen.error().message, path.string() + ": not a ckpt manifest (bad magic)");

  // A future version with a valid header checksum: refused with the version named.
  auto future = format::encode_manifest(*read_generation(s.old_gen.path));
  future[8] = std::byte{9};
  uint64_t hsum = checksum64(std::span(future).first(32));
  for (int i = 0; i < 8; ++i) future[32 + i] = static_cast<std::byte>(hsum >> (8 * i));
  ASSERT_TRUE(write_file_atomic(s.new_gen.path, "manifest", future).ok());
  gen = read_generation(s.new_gen.path);
  ASSERT_FALSE(gen.ok());
  EXPECT_TRUE(contains(gen.error().message, "format version 9 is not supported"))
      << gen.error().message;
}

TEST(ImageCorrupt, MissingManifestOrDataFile) {
  TwoGens s;
  fs::remove(s.new_gen.path / "data");
  Status st = s.store.verify(s.new_gen);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, (s.new_gen.path / "data").string()));
  EXPECT_TRUE(contains(st.error().message, "No such file"));
  fs::remove(s.new_gen.path / "manifest");
  std::vector<Problem> problems;
  EXPECT_EQ(s.store.list(&problems).size(), 1u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_TRUE(contains(problems[0].message, "manifest: No such file"));
  EXPECT_EQ(s.store.latest_valid()->id, s.old_gen.id);
}

TEST(ImageCorrupt, NoValidGenerationIsAnError) {
  TwoGens s;
  flip_byte(s.new_gen.path / "data", 20);
  flip_byte(s.old_gen.path / "data", 20);
  auto latest = s.store.latest_valid();
  ASSERT_FALSE(latest.ok());
  EXPECT_TRUE(contains(latest.error().message, "no valid generation (2 corrupt"));
}

TEST(ImageCorrupt, FolderThatIsNotAStore) {
  TempDir dir;
  std::ofstream(dir.path() / "notes.txt") << "hello";
  auto s = Store::open(dir.path(), {.create = true});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, dir.path().string() + ": not a ckpt store (no CKPT marker)");
  EXPECT_FALSE(fs::exists(dir.path() / "CKPT"));
  auto missing = Store::open(dir.path() / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().errnum, ENOENT);
  auto file = Store::open(dir.path() / "notes.txt");
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(contains(file.error().message, "not a directory"));
}

TEST(ImageCorrupt, EmptyDirectoryBecomesAStore) {
  TempDir dir;
  ASSERT_TRUE(Store::open(dir.path(), {.create = true}).ok());
  EXPECT_TRUE(is_store(dir.path()));
}

TEST(ImageCorrupt, SectionOutsideItsFileIsRejectedByTheManifestReader) {
  TwoGens s;
  auto gen = *read_generation(s.new_gen.path);
  gen.sections[0].stored_size = gen.files[0].size;  // runs past the end
  gen.sections[0].raw_size = gen.files[0].size;
  ASSERT_TRUE(write_file_atomic(s.new_gen.path, "manifest", format::encode_manifest(gen)).ok());
  auto r = read_generation(s.new_gen.path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "lie outside data")) << r.error().message;
}

// The raw size of a compressed section is only the manifest's word: read_section() sizes its
// buffer from it, so a lie in either direction must end in an error naming the section, never in
// a huge allocation or a short read taken as the whole.
TEST(ImageCorrupt, ACompressedSectionWhoseRawSizeLiesIsRefusedByItsReader) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto data = pattern(3 << 20, 5);
  auto written = write_gen(store, {{"mem", data}}, Compression::zstd);
  for (uint64_t claim :
       {uint64_t{1} << 50, uint64_t{data.size() - 4096}, uint64_t{data.size() + 1}}) {
    auto gen = *read_generation(written.path);
    gen.sections[0].raw_size = claim;
    ASSERT_TRUE(write_file_atomic(written.path, "manifest", format::encode_manifest(gen)).ok());
    auto lied = read_generation(written.path);
    ASSERT_TRUE(lied.ok()) << lied.error().message;
    auto got = store.read_section(*lied, "mem");
    ASSERT_FALSE(got.ok()) << "raw size " << claim;
    EXPECT_TRUE(contains(got.error().message, "section 'mem'")) << got.error().message;
  }
}

}  // namespace
}  // namespace ckpt::image
