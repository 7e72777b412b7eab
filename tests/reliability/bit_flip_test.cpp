// Damaged images: random single-bit flips across every file of real generations (plain and
// zstd), truncated files and missing files. `ckpt verify` must catch every one; a restore must
// never bring back a process that is not intact, never crash and never hang: it fails with one
// line, or (without --generation) restores the older, undamaged generation instead.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include <fmt/format.h>

#include "image/store.hpp"
#include "rel_util.hpp"

namespace rel {
namespace {

struct Figures {
  size_t damaged = 0, detected = 0, cli_checked = 0;
  size_t restores = 0, refused = 0, fell_back = 0, wrong = 0, crashed = 0, hung = 0;
};

// In process, what `ckpt verify GENERATION` runs: manifest, file sizes, every checksum.
bool verify_catches(const fs::path& gen) {
  auto info = ckpt::image::read_generation(gen);
  return !info.ok() || !ckpt::image::verify_generation(*info).ok();
}

class Images {
 public:
  // A small multi-threaded target dumped twice into a store (`compress`: with zstd), then
  // ended: generation [0] is the older, intact one, [1] the one the tests damage.
  explicit Images(bool compress)
      : p_({program_path("fault_target"), "2", "2"}, {.append_stdout = true}) {
    if (!p_.wait_ready()) return;
    tree_ = tree_of(p_.pid());
    std::vector<std::string> extra = {"--leave-running"};
    if (compress) extra.push_back("--compress");
    for (int i = 0; i < 2; ++i)
      if (!p_.dump(extra)) return;
    p_.kill_now();
    gens_ = generations(p_.store());
  }
  bool ok() const { return gens_.size() == 2; }
  const fs::path& damaged() const { return gens_[1]; }
  std::vector<fs::path> files() const {
    std::vector<fs::path> out;
    for (auto& e : fs::directory_iterator(gens_[1])) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }

  // One restore of the damaged store: with `pinned`, of the damaged generation itself.
  void restore(bool pinned, Figures& f, const std::string& what) {
    ++f.restores;
    std::vector<std::string> args = {"restore", "-D", p_.store().string(), "--detach",
                                     "--accept-changed-files"};
    if (pinned) args.insert(args.end(), {"--generation", damaged().filename().string()});
    auto r = run_ckpt_env(args, {}, 30s);
    if (r.status == -1) {
      ++f.hung;
      ADD_FAILURE() << what << ": restore hung\n" << r.describe();
    } else if (!WIFEXITED(r.status)) {
      ++f.crashed;
      ADD_FAILURE() << what << ": restore crashed\n" << r.describe();
    } else if (r.exit_code() != 0) {
      ++f.refused;
      EXPECT_EQ(r.exit_code(), 1) << what << r.describe();
      EXPECT_EQ(line_count(r.err), 1u) << what << r.describe();
    } else {
      EXPECT_FALSE(pinned) << what << ": the damaged generation was restored\n" << r.describe();
      std::map<pid_t, long> progress;
      auto checked = self_checks(p_, tree_, progress);
      if (checked) ++f.fell_back;
      if (!checked) ++f.wrong;
      EXPECT_TRUE(checked) << what << ": the restored process is not intact";
    }
    for (pid_t pid : tree_) ::kill(pid, SIGKILL);
    EXPECT_TRUE(all_gone(tree_, 10s)) << what;
  }

 private:
  TestProcess p_;
  std::vector<pid_t> tree_;
  std::vector<fs::path> gens_;
};

void flip_bit(const fs::path& file, off_t at, int bit) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << file;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, at), 1);
  b ^= static_cast<uint8_t>(1u << bit);
  ASSERT_EQ(::pwrite(fd, &b, 1, at), 1);
  ::close(fd);
}

void flip_everywhere(bool compress) {
  become_subreaper();
  Images img(compress);
  ASSERT_TRUE(img.ok());
  auto files = img.files();
  ASSERT_FALSE(files.empty());
  const long flips = scaled(5000, 10000), restore_every = scaled(50, 10);
  std::mt19937_64 rng(compress ? 2 : 1);
  Figures f;
  for (long i = 0; i < flips; ++i) {
    // A file first, then a bit in it: the small manifest gets its share.
    const fs::path& file = files[rng() % files.size()];
    auto size = fs::file_size(file);
    ASSERT_GT(size, 0u) << file;
    off_t at = static_cast<off_t>(rng() % size);
    int bit = static_cast<int>(rng() % 8);
    std::string what = fmt::format("bit {} of byte {} of {}", bit, at, file.filename().string());
    flip_bit(file, at, bit);
    ++f.damaged;
    bool caught = verify_catches(img.damaged());
    if (caught) ++f.detected;
    EXPECT_TRUE(caught) << what << " went unnoticed";
    if (i % 97 == 0) {
      ++f.cli_checked;
      auto r = run_ckpt({"verify", img.damaged().string()}, 30s);
      EXPECT_EQ(r.exit_code(), 1) << what << r.describe();
      EXPECT_EQ(line_count(r.err), 1u) << what << r.describe();
    }
    if (i % restore_every == 0) img.restore(i % (2 * restore_every) == 0, f, what);
    flip_bit(file, at, bit);
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_FALSE(verify_catches(img.damaged())) << "the flips were not all undone";
  std::printf(
      "%s image: %zu single-bit flips, %zu caught by verify (%zu also through `ckpt "
      "verify`); %zu restores: %zu refused with one line, %zu restored the older "
      "generation intact, %zu wrong, %zu crashed, %zu hung\n",
      compress ? "zstd" : "plain", f.damaged, f.detected, f.cli_checked, f.restores, f.refused,
      f.fell_back, f.wrong, f.crashed, f.hung);
}

TEST(BitFlips, EveryFlipInAPlainImageIsCaughtAndNothingWrongIsRestored) {
  flip_everywhere(false);
}

TEST(BitFlips, EveryFlipInACompressedImageIsCaughtAndNothingWrongIsRestored) {
  flip_everywhere(true);
}

TEST(DamagedFiles, TruncatedOrMissingFilesAreCaughtAndNothingWrongIsRestored) {
  become_subreaper();
  Figures f;
  for (bool compress : {false, true}) {
    Images img(compress);
    ASSERT_TRUE(img.ok());
    for (auto& file : img.files()) {
      std::string original = read_text(file);
      std::vector<size_t> lengths = {0, original.size() / 2, original.size() - 1};
      for (size_t len : lengths) {
        std::string what = file.filename().string() + " cut to " + std::to_string(len);
        fs::resize_file(file, len);
        ++f.damaged;
        if (verify_catches(img.damaged())) ++f.detected;
        auto r = run_ckpt({"verify", img.damaged().string()}, 30s);
        EXPECT_EQ(r.exit_code(), 1) << what << r.describe();
        img.restore(len == 0, f, what);
        std::ofstream(file, std::ios::binary | std::ios::trunc) << original;
      }
      std::string what = file.filename().string() + " missing";
      fs::rename(file, file.string() + ".away");
      ++f.damaged;
      if (verify_catches(img.damaged())) ++f.detected;
      img.restore(false, f, what);
      img.restore(true, f, what);
      fs::rename(file.string() + ".away", file);
      ASSERT_FALSE(verify_catches(img.damaged())) << "could not put " << file << " back";
    }
  }
  EXPECT_EQ(f.detected, f.damaged);
  std::printf(
      "%zu truncated or missing files, %zu caught by verify; %zu restores: %zu refused "
      "with one line, %zu restored the older generation intact, %zu wrong, %zu crashed, "
      "%zu hung\n",
      f.damaged, f.detected, f.restores, f.refused, f.fell_back, f.wrong, f.crashed, f.hung);
}

}  // namespace
}  // namespace rel
