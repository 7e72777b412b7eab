#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "common/fs_util.hpp"
#include "image/format.hpp"
#include "image/store.hpp"
#include "image_test_util.hpp"

namespace ckpt::image {
namespace {

class RoundTrip : public ::testing::TestWithParam<Compression> {};

TEST_P(RoundTrip, SectionsReadBackExactlyAndVerify) {
  TempDir dir;
  Store store = open_store(dir.path() / "s");
  auto big = pattern(9 << 20, 1);  // larger than the I/O chunk, so buffering is crossed
  auto small = pattern(100, 2);
  auto gen = write_gen(store, {{"big", big}, {"small", small}, {"empty", {}}}, GetParam());
  EXPECT_EQ(gen.labels.at("kind"), "test");
  ASSERT_TRUE(store.verify(gen).ok());

  auto found = store.find(gen.id);
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_EQ(found->sections.size(), 3u);
  EXPECT_EQ(found->total_bytes, gen.total_bytes);
  for (auto& [name, data] : std::map<std::string, std::vector<std::byte>>{
           {"big", big}, {"small", small}, {"empty", {}}}) {
    auto got = store.read_section(*found, name);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_TRUE(*got == data) << name;
    EXPECT_EQ(found->find_section(name)->raw_size, data.size());
  }
  if (GetParam() == Compression::zstd) {
    EXPECT_LT(found->find_section("big")->stored_size, big.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Image, RoundTrip, ::testing::Values(Compression::none, Compression::zstd));

// Reads section `name` of `gen` back whole, through the streaming reader.
std::vector<std::byte> read_back(Store& store, const GenerationInfo& gen, const char* name) {
  std::vector<std::byte> got;
  auto r = store.open_section(gen, name);
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) return got;
  std::vector<std::byte> buf(7777);  // not a divisor of anything written
  for (;;) {
    auto n = (*r)->read(buf);
    EXPECT_TRUE(n.ok()) << n.error().message;
    if (!n.ok() || *n == 0) break;
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(*n));
  }
  return got;
}

TEST(ImageStore, UncompressedSectionBytesLieAtTheirFileOffset) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto data = pattern(10000, 3);
  auto gen = write_gen(store, {{"a", pattern(77, 4)}, {"mem", data}});
  const SectionMeta* m = gen.find_section("mem");
  ASSERT_NE(m, nullptr);
  auto file = read_file(gen.path / m->file);
  ASSERT_TRUE(file.ok());
  ASSERT_GE(file->size(), m->offset + data.size());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file->begin() + static_cast<long>(m->offset)));
}

TEST(ImageStore, StreamingWritesInPiecesEqualOneWrite) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto data = pattern(5 << 20, 5);
  for (auto c : {Compression::none, Compression::zstd}) {
    auto w = store.begin_generation({.compression = c});
    ASSERT_TRUE(w.ok());
    auto s = (*w)->begin_section("mem");
    ASSERT_TRUE(s.ok());
    for (size_t off = 0; off < data.size(); off += 12345) {
      size_t n = std::min<size_t>(12345, data.size() - off);
      ASSERT_TRUE((*s)->write(std::span(data).subspan(off, n)).ok());
    }
    ASSERT_TRUE((*s)->finish().ok());
    auto gen = (*w)->commit();
    ASSERT_TRUE(gen.ok());
    EXPECT_TRUE(read_back(store, *gen, "mem") == data);
  }
}

// The memory dump's way: two buffers taken in turn, each refilled only after settle() of its
// last write_behind(), with plain writes between; the section must hold every byte in order.
TEST(ImageStore, WritesBehindFromReusedBuffersKeepTheirBytesAndOrder) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto data = pattern(41 << 20, 6);
  for (auto c : {Compression::none, Compression::zstd}) {
    auto w = store.begin_generation({.compression = c});
    ASSERT_TRUE(w.ok());
    auto s = (*w)->begin_section("mem");
    ASSERT_TRUE(s.ok());
    std::array<std::vector<std::byte>, 2> bufs;
    std::array<uint64_t, 2> tickets{};
    size_t turn = 0;
    for (size_t off = 0, i = 0; off < data.size(); ++i) {
      size_t n = std::min<size_t>(i % 5 == 4 ? 3000 : (3 << 20) + 4096 * i, data.size() - off);
      auto piece = std::span(data).subspan(off, n);
      if (i % 5 == 4) {
        ASSERT_TRUE((*s)->write(piece).ok());
      } else {
        turn ^= 1;
        ASSERT_TRUE((*s)->settle(tickets[turn]).ok());
        bufs[turn].assign(piece.begin(), piece.end());
        auto t = (*s)->write_behind(bufs[turn]);
        ASSERT_TRUE(t.ok()) << t.error().message;
        tickets[turn] = *t;
      }
      off += n;
    }
    ASSERT_TRUE((*s)->finish().ok());
    auto gen = (*w)->commit();
    ASSERT_TRUE(gen.ok()) << gen.error().message;
    ASSERT_TRUE(store.verify(*gen).ok());
    EXPECT_EQ(gen->find_section("mem")->raw_size, data.size());
    EXPECT_TRUE(read_back(store, *gen, "mem") == data) << static_cast<int>(c);
  }
}

// A write that fails on the write-behind thread (here: the file size limit, as a full disk
// would) is reported by a later call, and the generation is never published.
TEST(ImageStore, AWriteBehindThatFailsFailsTheGenerationAndLeavesNothing) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto data = pattern(16 << 20, 7);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 6 << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  Status failed;
  {
    auto w = store.begin_generation();
    ASSERT_TRUE(w.ok());
    auto s = (*w)->begin_section("mem");
    ASSERT_TRUE(s.ok());
    for (size_t off = 0; off < data.size() && failed.ok(); off += 4 << 20) {
      auto t = (*s)->write_behind(std::span(data).subspan(off, 4 << 20));
      if (!t.ok()) failed = t.error();
    }
    if (failed.ok()) failed = (*s)->finish();
    if (failed.ok()) failed = (*w)->commit().ok() ? Status{} : errorf("commit failed");
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("File too large"), std::string::npos)
      << failed.error().message;
  EXPECT_TRUE(store.list().empty());
  EXPECT_EQ(dir_names(dir.path()), std::vector<std::string>{"CKPT"});
}

TEST(ImageStore, FilesArePrivate) {
  TempDir dir;
  Store store = open_store(dir.path() / "s");
  auto gen = write_gen(store, {{"a", pattern(10, 1)}});
  struct stat st;
  ASSERT_EQ(stat((dir.path() / "s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(gen.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (auto& e : fs::directory_iterator(gen.path)) {
    ASSERT_EQ(stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << e.path();
  }
  ASSERT_EQ(stat((dir.path() / "s" / "CKPT").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(ImageStore, IdsSortByCreationAndListIsNewestFirst) {
  TempDir dir;
  Store store = open_store(dir.path());
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(write_gen(store, {{"a", pattern(10, i)}}).id);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]);
  auto gens = store.list();
  ASSERT_EQ(gens.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(gens[i].id, ids[4 - i]);
}

TEST(ImageStore, IdsKeepIncreasingWhenTheClockStepsBack) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto gen = write_gen(store, {{"a", pattern(10, 1)}});
  // Pretend a generation was written an hour in the future, then the clock stepped back.
  auto id = format::parse_id(gen.id);
  ASSERT_TRUE(id);
  std::string future = format::format_id({id->seconds + 3600, 7});
  fs::rename(gen.path, dir.path() / future);
  auto next = write_gen(store, {{"a", pattern(10, 2)}});
  EXPECT_GT(next.id, future);
  EXPECT_EQ(next.id, format::format_id({id->seconds + 3600, 8}));
}

TEST(ImageStore, ConcurrentWritersGetDistinctIds) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto w1 = store.begin_generation();
  auto w2 = store.begin_generation();
  ASSERT_TRUE(w1.ok() && w2.ok());
  ASSERT_TRUE((*w1)->write_section("a", pattern(10, 1)).ok());
  ASSERT_TRUE((*w2)->write_section("a", pattern(10, 2)).ok());
  auto g2 = (*w2)->commit();
  auto g1 = (*w1)->commit();
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_NE(g1->id, g2->id);
  EXPECT_EQ(store.list().size(), 2u);
}

TEST(ImageStore, AbandonedWriterLeavesNothing) {
  TempDir dir;
  Store store = open_store(dir.path());
  {
    auto w = store.begin_generation();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write_section("a", pattern(1000, 1)).ok());
  }
  EXPECT_EQ(dir_names(dir.path()), std::vector<std::string>{"CKPT"});
}

TEST(ImageStore, OpenRemovesLeftoversButNotALiveWritersDirectory) {
  TempDir dir;
  Store store = open_store(dir.path());
  fs::create_directory(dir.path() / ".tmp-999999-00000000deadbeef");  // no writer holds it
  std::ofstream(dir.path() / ".tmp-999999-00000000deadbeef" / "data") << "partial";
  fs::create_directory(dir.path() / ".del-gen-000000000001-000000-1");
  auto live = store.begin_generation();
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE((*live)->write_section("a", pattern(100, 1)).ok());

  auto again = Store::open(dir.path());
  ASSERT_TRUE(again.ok());
  auto names = dir_names(dir.path());
  ASSERT_EQ(names.size(), 2u) << "the marker and the live writer's directory remain";
  EXPECT_TRUE(names[0].starts_with(".tmp-" + std::to_string(getpid()) + "-")) << names[0];
  EXPECT_EQ(names[1], "CKPT");
  auto gen = (*live)->commit();
  ASSERT_TRUE(gen.ok()) << gen.error().message;
  EXPECT_EQ(again->list().size(), 1u);
}

}  // namespace
}  // namespace ckpt::image
