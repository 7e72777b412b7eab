// `ckpt show` and `ckpt verify` as a user runs them: output, messages and exit codes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "image/store.hpp"
#include "store_test_util.hpp"

namespace ckpt::image {
namespace {

namespace fs = std::filesystem;
using test::run;

bool has(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

void flip(const fs::path& file, off_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  unsigned char b = 0;
  ASSERT_EQ(pread(fd, &b, 1, offset), 1);
  b ^= 1;
  ASSERT_EQ(pwrite(fd, &b, 1, offset), 1);
  close(fd);
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "store";
    auto store = Store::open(dir_, {.create = true});
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 2; ++i) {
      auto w = store->begin_generation({.compression = i ? Compression::zstd : Compression::none});
      ASSERT_TRUE(w.ok());
      (*w)->set_label("kind", "process");
      ASSERT_TRUE((*w)->write_section("memory", test::content(100000, i)).ok());
      ASSERT_TRUE((*w)->write_section("regs", test::content(300, i + 10)).ok());
      auto g = (*w)->commit();
      ASSERT_TRUE(g.ok());
      gens_.insert(gens_.begin(), *g);  // newest first
    }
  }
  test::TempDir tmp_;
  fs::path dir_;
  std::vector<GenerationInfo> gens_;
};

TEST_F(Cli, ShowListsGenerationsNewestFirst) {
  auto r = run({CKPT_CLI_PATH, "show", dir_.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto nl = r.out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  std::string first = r.out.substr(0, nl), second = r.out.substr(nl + 1);
  EXPECT_TRUE(first.starts_with(gens_[0].id)) << r.out;
  EXPECT_TRUE(second.starts_with(gens_[1].id)) << r.out;
  EXPECT_TRUE(has(first, "2 sections")) << first;
  EXPECT_TRUE(first.ends_with("  ok")) << first;
}

TEST_F(Cli, ShowJsonForAStoreAndAGeneration) {
  auto r = run({CKPT_CLI_PATH, "show", "--json", dir_.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["generations"].size(), 2u);
  EXPECT_EQ(j["generations"][0]["id"], gens_[0].id);
  EXPECT_EQ(j["generations"][0]["status"], "ok");
  EXPECT_EQ(j["generations"][0]["labels"]["kind"], "process");

  r = run({CKPT_CLI_PATH, "show", "--json", gens_[0].path.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["id"], gens_[0].id);
  ASSERT_EQ(j["sections"].size(), 2u);
  EXPECT_EQ(j["sections"][0]["name"], "memory");
  EXPECT_EQ(j["sections"][0]["compression"], "zstd");
  EXPECT_EQ(j["sections"][0]["raw_size"], 100000);
  EXPECT_EQ(j["sections"][0]["checksum"], fmt::format("{:016x}", gens_[0].sections[0].checksum));
}

TEST_F(Cli, ShowGenerationListsLabelsAndSections) {
  auto r = run({CKPT_CLI_PATH, "show", gens_[1].path.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "label kind=process")) << r.out;
  EXPECT_TRUE(has(r.out, "section memory")) << r.out;
  EXPECT_TRUE(has(r.out, "section regs")) << r.out;
}

TEST_F(Cli, VerifyGoodStore) {
  auto r = run({CKPT_CLI_PATH, "verify", dir_.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "gen " + gens_[0].id + ": ok\ngen " + gens_[1].id + ": ok\n");
}

TEST_F(Cli, VerifyNamesTheFirstBadSection) {
  const SectionMeta& regs = gens_[1].sections[1];
  flip(gens_[1].path / "data", static_cast<off_t>(regs.offset + 3));
  std::string want =
      fmt::format("ckpt: gen {}: section 'regs' in {} at offset {}: checksum mismatch\n",
                  gens_[1].id, (gens_[1].path / "data").string(), regs.offset);
  auto r = run({CKPT_CLI_PATH, "verify", dir_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, want);
  EXPECT_EQ(r.out, "gen " + gens_[0].id + ": ok\n");
  r = run({CKPT_CLI_PATH, "verify", gens_[1].path.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, want);
  r = run({CKPT_CLI_PATH, "show", dir_.string()});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(has(r.out, "CORRUPT: gen " + gens_[1].id + ": section 'regs'")) << r.out;
}

TEST_F(Cli, VerifyMissingManifest) {
  fs::remove(gens_[0].path / "manifest");
  auto r = run({CKPT_CLI_PATH, "verify", dir_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, (gens_[0].path / "manifest").string() + ": No such file or directory"))
      << r.err;
}

TEST_F(Cli, NotAStoreAndUsageErrors) {
  auto r = run({CKPT_CLI_PATH, "verify", tmp_.path().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ckpt: " + tmp_.path().string() + ": not a ckpt store (no CKPT marker)\n");
  r = run({CKPT_CLI_PATH, "show", (tmp_.path() / "missing").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "missing: No such file or directory")) << r.err;
  r = run({CKPT_CLI_PATH, "verify"});
  EXPECT_EQ(r.exit_code, 2);
  r = run({CKPT_CLI_PATH, "verify", "--bogus", dir_.string()});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(Cli, NoPermission) {
  // Root reads everything; run the command as nobody against a root-only store.
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv is not installed";
  ASSERT_EQ(chmod(tmp_.path().c_str(), 0755), 0);
  auto r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", CKPT_CLI_PATH,
                "verify", dir_.string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(has(r.err, dir_.string())) << r.err;
  EXPECT_TRUE(has(r.err, "Permission denied")) << r.err;
}

TEST_F(Cli, AStoreOfAnotherUserIsRefusedUnlessTrusted) {
  ASSERT_EQ(chown(gens_[0].path.c_str(), 65534, 65534), 0);
  auto r = run({CKPT_CLI_PATH, "verify", dir_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, gens_[0].path.string() + ": owned by uid 65534")) << r.err;
  EXPECT_EQ(r.out, "gen " + gens_[1].id + ": ok\n") << "the other generation is still read";
  r = run({CKPT_CLI_PATH, "verify", "--trust-store", dir_.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run({CKPT_CLI_PATH, "show", gens_[0].path.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "owned by uid 65534")) << r.err;
  ASSERT_EQ(chown(dir_.c_str(), 65534, 65534), 0);
  r = run({CKPT_CLI_PATH, "restore", "-D", dir_.string(), "--detach"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, dir_.string() + ": owned by uid 65534")) << r.err;
  EXPECT_TRUE(has(r.err, "--trust-store")) << r.err;
}

TEST_F(Cli, AFifoInPlaceOfAFileIsAnErrorNotAHang) {
  for (const char* file : {"data", "manifest"}) {
    auto p = gens_[0].path / file;
    auto saved = gens_[0].path / "saved";
    fs::rename(p, saved);
    ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
    for (std::vector<std::string> args :
         {std::vector<std::string>{"timeout", "20", CKPT_CLI_PATH, "verify", dir_.string()},
          {"timeout", "20", CKPT_CLI_PATH, "verify", gens_[0].path.string()},
          {"timeout", "20", CKPT_CLI_PATH, "restore", "-D", dir_.string(), "--generation",
           gens_[0].id, "--detach"}}) {
      auto r = run(args);
      EXPECT_EQ(r.exit_code, 1) << args[3] << " " << file << ": " << r.err;
      EXPECT_TRUE(has(r.err, p.string() + ": a FIFO, where a regular file belongs")) << r.err;
    }
    fs::remove(p);
    fs::rename(saved, p);
  }
}

}  // namespace
}  // namespace ckpt::image
