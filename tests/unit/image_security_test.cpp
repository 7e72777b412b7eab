// Store security: modes whatever the umask, whose stores are trusted, files that are not
// regular files, an empty store name, and a damaged store marker.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>

#include "common/fs_util.hpp"
#include "image/format.hpp"
#include "image_test_util.hpp"
#include "supervisor/run_state.hpp"

namespace ckpt::image {
namespace {

constexpr uid_t kNobody = 65534;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

bool has(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

template <typename T>
Status status_of(const Result<T>& r) {
  if (r.ok()) return {};
  return r.error();
}

// Restores the umask at the end of a test.
struct Umask {
  explicit Umask(mode_t m) : old(::umask(m)) {}
  ~Umask() { ::umask(old); }
  mode_t old;
};

void expect_private(const fs::path& store) {
  EXPECT_EQ(mode_of(store), 0700u);
  EXPECT_EQ(mode_of(store / "CKPT"), 0600u);
  for (auto& e : fs::recursive_directory_iterator(store))
    EXPECT_EQ(mode_of(e.path()), e.is_directory() ? 0700u : 0600u) << e.path();
}

TEST(StoreSecurity, ModesAreFixedWhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{0022}, mode_t{0277}, mode_t{0777}}) {
    TempDir dir;
    Umask u(mask);
    auto store = Store::open(dir.path() / "a" / "store", {.create = true});
    ASSERT_TRUE(store.ok()) << store.error().message;
    write_gen(*store, {{"memory", pattern(10000, 1)}});
    ASSERT_TRUE(store->lock("test").ok());
    ASSERT_TRUE(supervisor::write_run_state(store->dir(), {}).ok());
    EXPECT_EQ(mode_of(dir.path() / "a"), 0700u) << "umask " << mask;
    expect_private(store->dir());
  }
}

TEST(StoreSecurity, AnExistingWorldWritableDirectoryBecomesPrivate) {
  TempDir dir;
  auto path = dir.path() / "store";
  ASSERT_EQ(mkdir(path.c_str(), 0777), 0);
  ASSERT_EQ(chmod(path.c_str(), 0777), 0);
  auto store = Store::open(path, {.create = true});
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(mode_of(path), 0700u);
  // Also an existing store whose mode was loosened later.
  ASSERT_EQ(chmod(path.c_str(), 0755), 0);
  ASSERT_TRUE(Store::open(path, {.create = true}).ok());
  EXPECT_EQ(mode_of(path), 0700u);
}

TEST(StoreSecurity, AFolderThatIsNotAStoreKeepsItsMode) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  std::ofstream(dir.path() / "notes.txt") << "mine";
  EXPECT_FALSE(Store::open(dir.path(), {.create = true}).ok());
  EXPECT_EQ(mode_of(dir.path()), 0755u);
}

TEST(StoreSecurity, AnotherUsersStoreIsRefusedUnlessTrusted) {
  TempDir dir;
  auto store = open_store(dir.path() / "store");
  auto gen = write_gen(store, {{"memory", pattern(5000, 2)}});
  ASSERT_EQ(chown(store.dir().c_str(), kNobody, kNobody), 0);
  auto r = Store::open(store.dir());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has(r.error().message, "owned by uid 65534, not by you (uid 0) or root"))
      << r.error().message;
  EXPECT_TRUE(has(r.error().message, "--trust-store"));
  EXPECT_FALSE(Store::open(store.dir(), {.create = true}).ok()) << "nor written into";
  auto trusted = Store::open(store.dir(), {.trust = {.any_owner = true}});
  ASSERT_TRUE(trusted.ok()) << trusted.error().message;
  EXPECT_TRUE(trusted->latest_valid().ok());
}

TEST(StoreSecurity, AnyPartOfAGenerationFromAnotherUserIsRefused) {
  for (std::string part : {"", "manifest", "data"}) {
    TempDir dir;
    auto store = open_store(dir.path() / "store");
    auto gen = write_gen(store, {{"memory", pattern(5000, 3)}});
    ASSERT_EQ(chown((gen.path / part).c_str(), kNobody, kNobody), 0);
    auto again = Store::open(store.dir());
    ASSERT_TRUE(again.ok());
    auto latest = again->latest_valid();
    ASSERT_FALSE(latest.ok()) << "part '" << part << "'";
    EXPECT_TRUE(has(latest.error().message, "owned by uid 65534")) << latest.error().message;
    // Reading a section of a generation found before the change is checked again.
    if (part == "data") {
      EXPECT_FALSE(store.read_section(gen, "memory").ok());
    }
    auto trusted = Store::open(store.dir(), {.trust = {.any_owner = true}});
    EXPECT_TRUE(trusted->latest_valid().ok()) << "part '" << part << "'";
  }
}

TEST(StoreSecurity, WritableByOthersIsRefused) {
  for (std::string part : {"", "gen", "gen/data"}) {
    TempDir dir;
    auto store = open_store(dir.path() / "store");
    auto gen = write_gen(store, {{"memory", pattern(5000, 4)}});
    fs::path p = part.empty() ? store.dir() : part == "gen" ? gen.path : gen.path / "data";
    ASSERT_EQ(chmod(p.c_str(), part == "gen/data" ? 0620 : 0707), 0);
    auto again = Store::open(store.dir());
    Status st = again.ok() ? status_of(again->latest_valid()) : Status(again.error());
    ASSERT_FALSE(st.ok()) << part;
    EXPECT_TRUE(has(st.error().message,
                    part == "gen/data" ? "writable by its group" : "writable by all users"))
        << st.error().message;
  }
}

TEST(StoreSecurity, DirectoriesAboveThatOthersCanWriteAreRefusedUnlessSticky) {
  TempDir dir;
  auto above = dir.path() / "shared";
  ASSERT_EQ(mkdir(above.c_str(), 0700), 0);
  auto store = open_store(above / "store");
  write_gen(store, {{"memory", pattern(100, 5)}});
  ASSERT_EQ(chmod(above.c_str(), 0777), 0);
  auto r = Store::open(above / "store");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has(r.error().message, "the directory " + above.string() + " above it is writable"))
      << r.error().message;
  EXPECT_FALSE(Store::open(above / "new", {.create = true}).ok()) << "nor created there";
  EXPECT_FALSE(fs::exists(above / "new"));
  ASSERT_EQ(chmod(above.c_str(), 01777), 0);  // like /tmp
  EXPECT_TRUE(Store::open(above / "store").ok());
  ASSERT_EQ(chown(above.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(chmod(above.c_str(), 0755), 0);
  r = Store::open(above / "store");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has(r.error().message, "is owned by uid 65534")) << r.error().message;
}

TEST(StoreSecurity, NonRegularFilesAreOneErrorNeverAHang) {
  for (std::string kind : {"fifo", "symlink", "device", "directory"}) {
    for (std::string file : {"data", "manifest"}) {
      TempDir dir;
      auto store = open_store(dir.path() / "store");
      auto gen = write_gen(store, {{"memory", pattern(5000, 6)}});
      auto p = gen.path / file;
      fs::copy_file(p, dir.path() / "copy");
      fs::remove(p);
      int made = 0;
      if (kind == "fifo") made = mkfifo(p.c_str(), 0600);
      if (kind == "symlink") fs::create_symlink(dir.path() / "copy", p);
      if (kind == "device") made = mknod(p.c_str(), S_IFCHR | 0600, makedev(1, 3));
      if (kind == "directory") fs::create_directory(p);
      ASSERT_EQ(made, 0) << kind;
      Status st = file == "manifest" ? status_of(read_generation(gen.path)) : store.verify(gen);
      ASSERT_FALSE(st.ok()) << kind << " " << file;
      std::string want = kind == "fifo"      ? "a FIFO, where a regular file belongs"
                         : kind == "symlink" ? "a symbolic link, where a regular file belongs"
                         : kind == "device"  ? "a character device, where a regular file belongs"
                                             : "a directory, where a regular file belongs";
      EXPECT_TRUE(has(st.error().message, want)) << st.error().message;
      if (file == "data") {
        EXPECT_FALSE(store.read_section(gen, "memory").ok());
      }
    }
  }
}

TEST(StoreSecurity, AFifoMarkerOrLockIsAnErrorNotAHang) {
  TempDir dir;
  auto store = open_store(dir.path() / "store");
  fs::remove(store.dir() / "CKPT");
  ASSERT_EQ(mkfifo((store.dir() / "CKPT").c_str(), 0600), 0);
  auto r = Store::open(store.dir());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has(r.error().message, "a FIFO")) << r.error().message;
  auto other = open_store(dir.path() / "other");
  ASSERT_EQ(mkfifo((other.dir() / "lock").c_str(), 0600), 0);
  auto lock = other.lock("test");
  ASSERT_FALSE(lock.ok());
  EXPECT_TRUE(has(lock.error().message, "a FIFO")) << lock.error().message;
}

TEST(StoreSecurity, AnEmptyNameIsAnErrorAndWritesNothing) {
  TempDir dir;
  auto cwd = fs::current_path();
  fs::current_path(dir.path());
  auto r = Store::open("", {.create = true});
  fs::current_path(cwd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "open store: the directory name is empty");
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

void flip_bit(const fs::path& file, size_t byte, int bit) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(byte));
  char c;
  f.get(c);
  c = static_cast<char>(c ^ (1 << bit));
  f.seekp(static_cast<std::streamoff>(byte));
  f.put(c);
}

TEST(StoreSecurity, EveryBitFlipOfTheMarkerLeavesTheGenerationsRestorable) {
  TempDir dir;
  auto store = open_store(dir.path() / "store");
  auto gen = write_gen(store, {{"memory", pattern(5000, 7)}});
  auto marker = store.dir() / "CKPT";
  for (size_t byte = 0; byte < format::kMarkerMagic.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      flip_bit(marker, byte, bit);
      auto r = Store::open(store.dir());
      ASSERT_TRUE(r.ok()) << "byte " << byte << " bit " << bit << ": " << r.error().message;
      auto latest = r->latest_valid();
      ASSERT_TRUE(latest.ok()) << latest.error().message;
      EXPECT_EQ(latest->id, gen.id);
      EXPECT_TRUE(is_store(store.dir()));
      flip_bit(marker, byte, bit);
    }
  }
}

TEST(StoreSecurity, ADamagedOrLostMarkerIsWrittenAgainByAWriter) {
  TempDir dir;
  auto store = open_store(dir.path() / "store");
  write_gen(store, {{"memory", pattern(5000, 8)}});
  auto marker = store.dir() / "CKPT";
  flip_bit(marker, 18, 1);  // "format 1" -> "format 3": it reads like a later format
  ASSERT_TRUE(Store::open(store.dir(), {.create = true}).ok());
  EXPECT_EQ(*read_file(marker),
            std::vector<std::byte>(reinterpret_cast<const std::byte*>(format::kMarkerMagic.data()),
                                   reinterpret_cast<const std::byte*>(format::kMarkerMagic.data()) +
                                       format::kMarkerMagic.size()));
  fs::remove(marker);
  ASSERT_TRUE(Store::open(store.dir()).ok()) << "recognized by its generations";
  EXPECT_FALSE(fs::exists(marker)) << "a reader does not write";
  ASSERT_TRUE(Store::open(store.dir(), {.create = true}).ok());
  EXPECT_TRUE(fs::exists(marker));
}

TEST(StoreSecurity, WithoutGenerationsADamagedMarkerIsNotAStore) {
  TempDir dir;
  auto store = open_store(dir.path() / "store");
  flip_bit(store.dir() / "CKPT", 2, 0);
  auto r = Store::open(store.dir());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has(r.error().message, "not a ckpt store (bad CKPT marker)")) << r.error().message;
  std::ofstream(store.dir() / "CKPT", std::ios::trunc) << "ckpt store\nformat 2\n";
  r = Store::open(store.dir());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has(r.error().message, "store format not supported")) << r.error().message;
}

}  // namespace
}  // namespace ckpt::image
