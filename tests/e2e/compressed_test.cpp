// `ckpt dump --compress`: the image really is compressed (the manifest says zstd, and the files
// on disk are much smaller than the same process dumped plain), and the process restores from it
// (pages are decompressed as they stream into the process, checked on the way).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_process.hpp"

namespace e2e {
namespace {

using json = nlohmann::json;

// `ckpt show --json` of the newest generation of `store`: its path and sections.
json newest_generation(const fs::path& store) {
  auto list = run_ckpt({"show", "--json", store.string()});
  EXPECT_EQ(list.exit_code(), 0) << list.describe();
  auto gens = json::parse(list.out, nullptr, false);
  if (gens.is_discarded() || gens["generations"].empty()) return {};
  auto one = run_ckpt({"show", "--json", gens["generations"][0]["path"].get<std::string>()});
  EXPECT_EQ(one.exit_code(), 0) << one.describe();
  auto gen = json::parse(one.out, nullptr, false);
  return gen.is_discarded() ? json{} : gen;
}

// Bytes of every file in a generation directory as the file system has them.
uint64_t bytes_on_disk(const fs::path& dir) {
  uint64_t sum = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) sum += e.file_size();
  return sum;
}

struct Pages {
  uint64_t raw = 0, stored = 0;
  int sections = 0, zstd = 0;
};

Pages memory_pages(const json& gen) {
  Pages p;
  for (auto& s : gen["sections"]) {
    if (s["name"].get<std::string>().find("memory.pages") == std::string::npos) continue;
    ++p.sections;
    p.raw += s["raw_size"].get<uint64_t>();
    p.stored += s["stored_size"].get<uint64_t>();
    if (s["compression"] == "zstd") ++p.zstd;
  }
  return p;
}

TEST(Compressed, MemoryProgramRestoresFromCompressedImage) {
  become_subreaper();
  TestProcess p({program_path("memory")});
  ASSERT_TRUE(p.wait_ready());
  // The same process dumped plain first: what the compressed image is measured against.
  ASSERT_TRUE(p.dump({"--leave-running"}));
  json plain = newest_generation(p.store());
  ASSERT_TRUE(p.dump({"--compress"}));
  json packed = newest_generation(p.store());
  ASSERT_FALSE(plain.empty() || packed.empty());
  ASSERT_NE(plain["id"], packed["id"]);

  Pages a = memory_pages(plain), b = memory_pages(packed);
  // The program fills megabytes of its mappings with a repeating pattern, which zstd shrinks
  // far below a quarter.
  ASSERT_GT(a.sections, 0);
  EXPECT_GE(a.raw, 8u << 20);
  EXPECT_EQ(a.zstd, 0) << "a dump without --compress compressed its pages";
  EXPECT_EQ(a.stored, a.raw);
  EXPECT_EQ(b.sections, a.sections);
  EXPECT_EQ(b.zstd, b.sections) << "memory sections stored without compression";
  EXPECT_EQ(b.raw, a.raw) << "the two dumps saved different amounts of memory";
  EXPECT_LT(b.stored * 4, b.raw) << b.stored << " of " << b.raw << " bytes";
  uint64_t disk_plain = bytes_on_disk(plain["path"].get<std::string>());
  uint64_t disk_packed = bytes_on_disk(packed["path"].get<std::string>());
  EXPECT_LT(disk_packed * 4, disk_plain)
      << "compressed generation " << disk_packed << " bytes, plain " << disk_plain;
  std::printf(
      "memory pages: %llu bytes raw, %llu stored compressed; generation on disk %llu "
      "bytes plain, %llu compressed\n",
      (unsigned long long)b.raw, (unsigned long long)b.stored, (unsigned long long)disk_plain,
      (unsigned long long)disk_packed);

  ASSERT_TRUE(p.restore());  // from the newest generation, the compressed one
  EXPECT_TRUE(p.finish());
}

}  // namespace
}  // namespace e2e
