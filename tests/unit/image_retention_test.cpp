// Retention and the run lock.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "image/store.hpp"
#include "image_test_util.hpp"

namespace ckpt::image {
namespace {

std::vector<std::string> ids(const Store& store) {
  std::vector<std::string> out;
  for (auto& g : store.list()) out.push_back(g.id);
  return out;
}

TEST(ImageRetention, KeepsTheNewestN) {
  TempDir dir;
  Store store = open_store(dir.path());
  std::vector<std::string> written;
  for (int i = 0; i < 5; ++i) written.push_back(write_gen(store, {{"a", pattern(100, i)}}).id);
  auto report = store.apply_retention({.keep = 2});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->removed, (std::vector<std::string>{written[2], written[1], written[0]}));
  EXPECT_EQ(ids(store), (std::vector<std::string>{written[4], written[3]}));
  // Nothing but the generations and the marker remain (removal leaves no hidden directories).
  EXPECT_EQ(dir_names(dir.path()).size(), 3u);
}

TEST(ImageRetention, KeepsAtMostBBytes) {
  TempDir dir;
  Store store = open_store(dir.path());
  std::vector<GenerationInfo> gens;
  for (int i = 0; i < 4; ++i) gens.push_back(write_gen(store, {{"a", pattern(10000, i)}}));
  uint64_t two = gens[3].total_bytes + gens[2].total_bytes;
  auto report = store.apply_retention({.max_bytes = two + gens[1].total_bytes - 1});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(ids(store), (std::vector<std::string>{gens[3].id, gens[2].id}));
}

TEST(ImageRetention, NeverDeletesTheOnlyValidGeneration) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto good = write_gen(store, {{"a", pattern(10000, 1)}});
  auto bad1 = write_gen(store, {{"a", pattern(10000, 2)}});
  auto bad2 = write_gen(store, {{"a", pattern(10000, 3)}});
  flip_byte(bad1.path / "data", 100);
  flip_byte(bad2.path / "data", 100);
  auto report = store.apply_retention({.keep = 1, .max_bytes = 1});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(ids(store), std::vector<std::string>{good.id});
  EXPECT_TRUE(store.latest_valid().ok());
}

TEST(ImageLock, SecondLockerIsToldWhoHoldsIt) {
  TempDir dir;
  Store store = open_store(dir.path());
  auto first = store.lock("ckpt run");
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = store.lock("ckpt run");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().message,
            fmt::format("store {} is in use by pid {} (ckpt run)", dir.path().string(), getpid()));
  first->release();
  auto third = store.lock("test");
  EXPECT_TRUE(third.ok());
}

TEST(ImageLock, ReleasedWhenTheHolderDies) {
  TempDir dir;
  Store store = open_store(dir.path());
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t child = fork();
  if (child == 0) {
    auto l = store.lock("child");
    char c = l.ok() ? 'y' : 'n';
    (void)!write(pipefd[1], &c, 1);
    pause();
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(pipefd[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  auto held = store.lock("parent");
  ASSERT_FALSE(held.ok());
  EXPECT_NE(held.error().message.find(fmt::format("pid {} (child)", child)), std::string::npos);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(store.lock("parent").ok());
  close(pipefd[0]);
  close(pipefd[1]);
}

}  // namespace
}  // namespace ckpt::image
