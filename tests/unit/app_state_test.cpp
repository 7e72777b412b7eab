// ckpt::AppState / ckpt_state_*: application-level checkpoint files.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "app/state_file.hpp"
#include "ckpt/ckpt.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

class AppTempDir {
 public:
  AppTempDir() {
    char tmpl[] = "/tmp/ckpt-app-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~AppTempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The program state of the tests: a fixed-size struct and a variable-length list.
struct Fixture {
  struct Counters {
    int a = 0;
    double b = 0;
  } counters;
  std::vector<int> list;

  AppState open(const fs::path& dir, unsigned keep = 0, bool clean = false) {
    auto st = AppState::open({.dir = dir.string(), .keep = keep, .clean_at_start = clean});
    EXPECT_TRUE(st.ok()) << st.error().message;
    auto s = st->add_object("counters", counters);
    EXPECT_TRUE(s.ok()) << s.error().message;
    s = st->add_serialized(
        "list",
        [this] {
          std::vector<std::byte> b(list.size() * sizeof(int));
          if (!b.empty()) std::memcpy(b.data(), list.data(), b.size());
          return b;
        },
        [this](std::span<const std::byte> b) {
          if (b.size() % sizeof(int)) return false;
          list.resize(b.size() / sizeof(int));
          if (!b.empty()) std::memcpy(list.data(), b.data(), b.size());
          return true;
        });
    EXPECT_TRUE(s.ok()) << s.error().message;
    return std::move(*st);
  }

  void set(int v) {
    counters = {v, v * 0.5};
    list.assign(static_cast<size_t>(v), v);
  }
  bool holds(int v) const {
    return counters.a == v && counters.b == v * 0.5 &&
           list == std::vector<int>(static_cast<size_t>(v), v);
  }
};

std::vector<std::string> checkpoint_files(const fs::path& dir) {
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir))
    if (app::parse_checkpoint_file_name(e.path().filename().string()))
      names.push_back(e.path().filename().string());
  return names;
}

void overwrite(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<char> random_bytes(size_t n) {
  std::mt19937 rng(42);
  std::vector<char> b(n);
  for (auto& c : b) c = static_cast<char>(rng());
  return b;
}

// Writes checkpoints holding 1, 2, ..., n; returns their paths in order.
std::vector<std::string> write_sequence(Fixture& fx, AppState& st, int n) {
  std::vector<std::string> paths;
  for (int v = 1; v <= n; ++v) {
    fx.set(v);
    auto p = st.checkpoint();
    EXPECT_TRUE(p.ok()) << p.error().message;
    paths.push_back(*p);
  }
  return paths;
}

TEST(AppState, RoundTripRestoresEveryRegisteredItem) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path());
  fx.set(7);
  auto path = st.checkpoint();
  ASSERT_TRUE(path.ok()) << path.error().message;
  EXPECT_EQ(fs::path(*path).parent_path(), dir.path());
  EXPECT_TRUE(app::parse_checkpoint_file_name(fs::path(*path).filename().string()));
  fx.set(3);
  auto r = st.restore();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->restored);
  EXPECT_EQ(r->path, *path);
  EXPECT_TRUE(r->skipped.empty());
  EXPECT_TRUE(fx.holds(7));
}

TEST(AppState, RestoresTheNewestOfSeveralWrittenInOneSecond) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path());
  auto paths = write_sequence(fx, st, 6);
  std::set<std::string> unique(paths.begin(), paths.end());
  EXPECT_EQ(unique.size(), 6u) << "checkpoints overwrote each other";
  // Names sort in the order the checkpoints were taken.
  std::vector<app::CheckpointName> names;
  for (auto& p : paths)
    names.push_back(*app::parse_checkpoint_file_name(fs::path(p).filename().string()));
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  fx.set(0);
  auto r = st.restore();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path, paths.back());
  EXPECT_TRUE(fx.holds(6));
}

TEST(AppState, SkipsInvalidFilesWithAMessageAndLoadsTheNextOlder) {
  struct Case {
    const char* what;
    std::function<void(const fs::path&)> damage;
    const char* reason;
  };
  std::vector<Case> cases = {
      {"random bytes", [](const fs::path& p) { overwrite(p, random_bytes(fs::file_size(p))); },
       "bad magic"},
      {"truncated", [](const fs::path& p) { fs::resize_file(p, fs::file_size(p) - 5); },
       "checksum mismatch"},
      {"flipped byte",
       [](const fs::path& p) {
         std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
         f.seekp(40);
         f.put('\x7f');
       },
       "checksum mismatch"},
      {"wrong magic",
       [](const fs::path& p) {
         std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
         f.write("NOTCKPT!", 8);
       },
       "bad magic"},
      {"empty", [](const fs::path& p) { fs::resize_file(p, 0); }, "truncated"},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    AppTempDir dir;
    Fixture fx;
    auto st = fx.open(dir.path());
    auto paths = write_sequence(fx, st, 3);
    c.damage(paths[2]);
    fx.set(0);
    auto r = st.restore();
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->restored);
    EXPECT_EQ(r->path, paths[1]);
    EXPECT_TRUE(fx.holds(2));
    ASSERT_EQ(r->skipped.size(), 1u);
    EXPECT_EQ(r->skipped[0].find(fs::path(paths[2]).filename().string()), 0u) << r->skipped[0];
    EXPECT_NE(r->skipped[0].find(c.reason), std::string::npos) << r->skipped[0];
    EXPECT_EQ(r->skipped[0].find('\n'), std::string::npos);
  }
}

TEST(AppState, SkipsCheckpointsOfADifferentSetOfItems) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path());
  auto paths = write_sequence(fx, st, 1);
  {
    // A newer file from a program with a bigger struct under the same name.
    char big[32] = {};
    auto other = AppState::open({.dir = dir.path().string()});
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(other->add_bytes("counters", big, sizeof big).ok());
    ASSERT_TRUE(other
                    ->add_serialized(
                        "list", [] { return std::vector<std::byte>{}; },
                        [](std::span<const std::byte>) { return true; })
                    .ok());
    ASSERT_TRUE(other->checkpoint().ok());
    // And a newer one still with the right items plus one this program does not have.
    Fixture same;
    auto third = same.open(dir.path());
    int extra = 1;
    ASSERT_TRUE(third.add_object("extra", extra).ok());
    ASSERT_TRUE(third.checkpoint().ok());
  }
  fx.set(0);
  auto r = st.restore();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->restored);
  EXPECT_EQ(r->path, paths[0]);
  EXPECT_TRUE(fx.holds(1));
  ASSERT_EQ(r->skipped.size(), 2u);
  EXPECT_NE(r->skipped[0].find("item 'extra' is not registered"), std::string::npos)
      << r->skipped[0];
  EXPECT_NE(r->skipped[1].find("item 'counters' has 32 bytes, 16 registered"), std::string::npos)
      << r->skipped[1];
}

TEST(AppState, ReportsNoValidCheckpointAndLeavesStateAlone) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path());
  auto paths = write_sequence(fx, st, 2);
  for (auto& p : paths) overwrite(p, random_bytes(100));
  fx.set(9);
  auto r = st.restore();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->restored);
  EXPECT_EQ(r->skipped.size(), 2u);
  EXPECT_TRUE(fx.holds(9));

  Fixture fresh;
  auto none = fresh.open(dir.path() / "does-not-exist").restore();
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->restored);
  EXPECT_TRUE(none->skipped.empty());
}

TEST(AppState, SkipsAFileItsDeserializerRejects) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path());
  auto paths = write_sequence(fx, st, 1);
  auto other = AppState::open({.dir = dir.path().string()});
  ASSERT_TRUE(other.ok());
  Fixture::Counters c{};
  ASSERT_TRUE(other->add_object("counters", c).ok());
  // 3 bytes: not a whole number of ints, which the fixture's deserializer refuses.
  ASSERT_TRUE(other
                  ->add_serialized(
                      "list", [] { return std::vector<std::byte>(3); },
                      [](std::span<const std::byte>) { return true; })
                  .ok());
  ASSERT_TRUE(other->checkpoint().ok());
  fx.set(0);
  auto r = st.restore();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path, paths[0]);
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_NE(r->skipped[0].find("deserializer of item 'list' rejected its 3 bytes"),
            std::string::npos)
      << r->skipped[0];
  EXPECT_TRUE(fx.holds(1));
}

TEST(AppState, RetentionKeepsTheNewest) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path(), /*keep=*/2);
  auto paths = write_sequence(fx, st, 5);
  auto files = checkpoint_files(dir.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> expected = {fs::path(paths[3]).filename().string(),
                                       fs::path(paths[4]).filename().string()};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(files, expected);
}

TEST(AppState, CleanAtStartRemovesOnlyCheckpointFiles) {
  AppTempDir dir;
  {
    Fixture fx;
    auto st = fx.open(dir.path());
    write_sequence(fx, st, 3);
  }
  overwrite(dir.path() / ".tmp.checkpoint.5.dat.123.0", {'x'});  // an interrupted write
  overwrite(dir.path() / "checkpoint.dat", {'x'});               // not one of ours
  overwrite(dir.path() / "notes.txt", {'x'});
  Fixture fx;
  auto st = fx.open(dir.path(), 0, /*clean=*/true);
  std::set<std::string> left;
  for (auto& e : fs::directory_iterator(dir.path())) left.insert(e.path().filename().string());
  EXPECT_EQ(left, (std::set<std::string>{"checkpoint.dat", "notes.txt"}));
  auto r = st.restore();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->restored);
  // clean() on demand reports the count.
  write_sequence(fx, st, 2);
  auto n = st.clean();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
}

TEST(AppState, FilesArePrivate) {
  AppTempDir dir;
  Fixture fx;
  auto st = fx.open(dir.path() / "sub" / "dir");
  auto p = st.checkpoint();
  ASSERT_TRUE(p.ok()) << p.error().message;
  struct stat s;
  ASSERT_EQ(stat(p->c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0600u);
}

TEST(AppState, UnwritableDirectoryIsAnErrorWithThePath) {
  AppTempDir dir;
  overwrite(dir.path() / "file", {'x'});
  Fixture fx;
  auto st = fx.open(dir.path() / "file" / "sub");
  auto p = st.checkpoint();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().errnum, ENOTDIR);
  EXPECT_NE(p.error().message.find((dir.path() / "file").string()), std::string::npos)
      << p.error().message;

  // A directory that exists but cannot be written: root ignores modes, sysfs refuses anyone.
  fs::path locked = dir.path() / "locked";
  if (geteuid() == 0) {
    locked = "/sys/kernel";
    if (!fs::exists(locked)) GTEST_SKIP() << "no /sys/kernel";
  } else {
    fs::create_directory(locked);
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
  }
  Fixture fx2;
  auto st2 = fx2.open(locked);
  auto p2 = st2.checkpoint();
  ASSERT_FALSE(p2.ok());
  EXPECT_EQ(p2.error().errnum, EACCES) << p2.error().message;
  EXPECT_NE(p2.error().message.find(locked.string()), std::string::npos) << p2.error().message;
}

TEST(AppState, RegistrationErrors) {
  AppTempDir dir;
  auto st = AppState::open({.dir = dir.path().string()});
  ASSERT_TRUE(st.ok());
  int x = 0;
  ASSERT_TRUE(st->add_object("x", x).ok());
  auto dup = st->add_object("x", x);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().errnum, EEXIST);
  auto empty = st->add_object("", x);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().errnum, EINVAL);
  auto long_name = st->add_object(std::string(300, 'n'), x);
  EXPECT_EQ(long_name.error().errnum, EINVAL);
}

TEST(AppState, SerializerFailureWritesNothing) {
  AppTempDir dir;
  auto st = AppState::open({.dir = dir.path().string()});
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(st->add_serialized(
                    "bad", []() -> std::vector<std::byte> { throw std::runtime_error("no"); },
                    [](std::span<const std::byte>) { return true; })
                  .ok());
  auto p = st->checkpoint();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().errnum, ECANCELED);
  EXPECT_NE(p.error().message.find("serializer of item 'bad' failed"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(AppStateFile, EveryByteIsCovered) {
  std::vector<app::StateItem> items = {{"a", {std::byte{1}, std::byte{2}}}, {"bb", {}}};
  auto data = app::encode_state(123, items);
  auto ok = app::decode_state(data);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->timestamp_ns, 123u);
  ASSERT_EQ(ok->items.size(), 2u);
  EXPECT_EQ(ok->items[0].name, "a");
  EXPECT_EQ(ok->items[0].bytes, items[0].bytes);
  for (size_t i = 0; i < data.size(); ++i) {
    auto bad = data;
    bad[i] ^= std::byte{0x01};
    EXPECT_FALSE(app::decode_state(bad).ok()) << "flip at " << i;
  }
  for (size_t n = 0; n < data.size(); ++n)
    EXPECT_FALSE(app::decode_state(std::span(data).first(n)).ok()) << "truncated to " << n;
}

TEST(AppStateFile, NamesAndOrdering) {
  using app::CheckpointName;
  EXPECT_EQ(app::checkpoint_file_name({1700000000, 0}), "checkpoint.1700000000.dat");
  EXPECT_EQ(app::checkpoint_file_name({1700000000, 2}), "checkpoint.1700000000.2.dat");
  EXPECT_EQ(app::parse_checkpoint_file_name("checkpoint.1700000000.2.dat"),
            (CheckpointName{1700000000, 2}));
  for (const char* bad :
       {"checkpoint.dat", "checkpoint..dat", "checkpoint.12.0.dat", "checkpoint.012.dat",
        "checkpoint.12.dat.tmp", "checkpoint.-1.dat", "checkpoint.1.2.3.dat", "xcheckpoint.1.dat"})
    EXPECT_FALSE(app::parse_checkpoint_file_name(bad)) << bad;
  std::vector<app::CheckpointEntry> existing = {{{100, 1}, {}}, {{100, 0}, {}}};
  EXPECT_EQ(app::next_checkpoint_name(existing, 100), (CheckpointName{100, 2}));
  EXPECT_EQ(app::next_checkpoint_name(existing, 101), (CheckpointName{101, 0}));
  // The clock went back: the new file must still sort after the newest.
  EXPECT_EQ(app::next_checkpoint_name(existing, 50), (CheckpointName{100, 2}));
  EXPECT_EQ(app::next_checkpoint_name({}, 50), (CheckpointName{50, 0}));
}

}  // namespace
}  // namespace ckpt
