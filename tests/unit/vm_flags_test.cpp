// VmFlags read before the freeze (resources/vm_flags.hpp): adopted while maps and the locked size
// still agree, read again when they do not, and a change that only smaps shows (madvise on a
// whole mapping) caught afterwards, in the process itself or in a fork of it.
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "resources/vm_flags.hpp"

namespace ckpt {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kArea = 16 * kPage;

// Between two inaccessible pages: a mapping of its own, which madvise() does not split.
unsigned char* lone_area() {
  auto* p = static_cast<unsigned char*>(
      mmap(nullptr, kArea + 2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED || mprotect(p + kPage, kArea, PROT_READ | PROT_WRITE) != 0) _exit(3);
  std::memset(p + kPage, 7, kArea);
  return p + kPage;
}

// A child that changes its mappings when told: 'w' MADV_WIPEONFORK, 'd' MADV_DONTFORK, 'l'
// mlock (each on an area of its own), 'g' the wipe area grown by the page after it, 'm' a new
// mapping (shared: it merges with none), 'f' a fork that pauses (its pid is the answer). Every
// command is answered with a pid_t (0 for all but 'f').
class Child {
 public:
  Child() {
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) std::abort();
    unsigned char* wipe = lone_area();
    unsigned char* dontfork = lone_area();
    unsigned char* locked = lone_area();
    wipe_ = reinterpret_cast<uint64_t>(wipe);
    pid_ = fork();
    if (pid_ == 0) {
      close(down[1]);
      close(up[0]);
      char c;
      while (read(down[0], &c, 1) == 1) {
        pid_t answer = 0;
        int r = 0;
        if (c == 'w') r = madvise(wipe, kArea, MADV_WIPEONFORK);
        if (c == 'd') r = madvise(dontfork, kArea, MADV_DONTFORK);
        if (c == 'l') r = static_cast<int>(syscall(SYS_mlock, locked, kArea));  // not ASan's
        // Grown in place, one mapping still (a forked mapping merges with no new neighbour).
        if (c == 'g')
          r = munmap(wipe + kArea, kPage) != 0 ||
                      mremap(wipe, kArea, kArea + kPage, 0) == MAP_FAILED
                  ? -1
                  : 0;
        if (c == 'm')
          r = mmap(nullptr, kArea, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1
                                                                                               : 0;
        if (c == 'f') {
          answer = fork();
          if (answer == 0) {
            for (;;) pause();
          }
        }
        if (r != 0) answer = -1;
        if (write(up[1], &answer, sizeof answer) != sizeof answer) _exit(2);
      }
      _exit(0);
    }
    close(down[0]);
    close(up[1]);
    to_ = down[1];
    from_ = up[0];
  }
  ~Child() {
    for (pid_t p : forks_) kill(p, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(to_);
    close(from_);
  }
  pid_t pid() const { return pid_; }
  uint64_t wipe_area() const { return wipe_; }
  pid_t tell(char c) {
    pid_t answer = -1;
    if (write(to_, &c, 1) != 1 || read(from_, &answer, sizeof answer) != sizeof answer) return -1;
    if (c == 'f' && answer > 0) forks_.push_back(answer);
    return answer;
  }

 private:
  pid_t pid_ = 0;
  uint64_t wipe_ = 0;
  int to_ = -1, from_ = -1;
  std::vector<pid_t> forks_;
};

std::vector<proc::MapEntry> early_of(pid_t pid) {
  auto early = vm_flags::read_early(pid);
  EXPECT_TRUE(early.ok()) << early.error().message;
  return early.ok() ? *early : std::vector<proc::MapEntry>{};
}

TEST(VmFlags, AdoptedWhileMapsHoldAndAWholeMappingsMadviseIsCaughtInTheProcess) {
  Child child;
  auto early = early_of(child.pid());
  auto adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok()) << adopted.error().message;
  ASSERT_TRUE(adopted->has_value());
  EXPECT_TRUE(vm_flags::check_now(child.pid(), **adopted).ok());
  // maps shows nothing of it: the early flags are still adopted, and the check finds them moved.
  ASSERT_EQ(child.tell('w'), 0);
  adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok() && adopted->has_value());
  Status st = vm_flags::check_now(child.pid(), **adopted);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().errnum, vm_flags::kFlagsMoved);
  EXPECT_NE(st.error().message.find("wf"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find(vm_flags::kFlagsMovedText), std::string::npos);
}

TEST(VmFlags, AMappingThatGrewSinceTheEarlyReadIsAdoptedWithItsRangeNow) {
  Child child;
  auto early = early_of(child.pid());
  ASSERT_EQ(child.tell('g'), 0);
  auto adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok()) << adopted.error().message;
  ASSERT_TRUE(adopted->has_value()) << "a grown mapping was taken for a new one";
  auto grown = std::find_if((*adopted)->begin(), (*adopted)->end(),
                            [&](const proc::MapEntry& m) { return m.start == child.wipe_area(); });
  ASSERT_NE(grown, (*adopted)->end());
  EXPECT_EQ(grown->end, child.wipe_area() + kArea + kPage);
  EXPECT_TRUE(vm_flags::check_now(child.pid(), **adopted).ok());
}

TEST(VmFlags, AnMlockOrANewMappingSinceTheEarlyReadMakesTheFlagsReadAgain) {
  Child child;
  auto early = early_of(child.pid());
  ASSERT_EQ(child.tell('l'), 0);
  auto adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok()) << adopted.error().message;
  EXPECT_FALSE(adopted->has_value()) << "an mlock() of a whole mapping went unnoticed";
  early = early_of(child.pid());
  ASSERT_EQ(child.tell('m'), 0);
  adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok());
  EXPECT_FALSE(adopted->has_value()) << "a new mapping went unnoticed";
}

TEST(VmFlags, AForkTakenAfterAMadvDontforkShowsItAndOneTakenWithTheFlagsAgrees) {
  Child child;
  auto early = early_of(child.pid());
  ASSERT_EQ(child.tell('d'), 0);
  pid_t snap = child.tell('f');
  ASSERT_GT(snap, 0);
  auto adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok() && adopted->has_value());
  Status st = vm_flags::check_at_fork(child.pid(), **adopted, snap);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().errnum, vm_flags::kFlagsMoved);
  EXPECT_NE(st.error().message.find("became MADV_DONTFORK"), std::string::npos)
      << st.error().message;
  // Read again with the flag: the next fork leaves that area out as the flags say.
  early = early_of(child.pid());
  snap = child.tell('f');
  ASSERT_GT(snap, 0);
  adopted = vm_flags::adopt_early(child.pid(), early);
  ASSERT_TRUE(adopted.ok() && adopted->has_value());
  st = vm_flags::check_at_fork(child.pid(), **adopted, snap);
  EXPECT_TRUE(st.ok()) << st.error().message;
}

// The iterator's flags, translated, are smaps' own, mapping for mapping, after each change the
// child makes (madvise and mlock of whole mappings, a grown one, a new shared one), and a
// change the iterator reads at once needs no early read nor check.
void expect_fast_is_smaps(pid_t pid, std::string_view after) {
  SCOPED_TRACE(after);
  auto fast = vm_flags::read_fast(pid);
  ASSERT_TRUE(fast.ok()) << fast.error().message;
  // As root, on a kernel with BTF (this machine): the fast reader must be there.
  ASSERT_TRUE(fast->has_value()) << "no BPF vma iterator (CKPT_LOG=memory=debug says why)";
  auto smaps = proc::read_smaps(pid);
  ASSERT_TRUE(smaps.ok()) << smaps.error().message;
  ASSERT_EQ((*fast)->size(), smaps->size());
  for (size_t i = 0; i < smaps->size(); ++i) {
    const proc::MapEntry &f = (**fast)[i], &s = (*smaps)[i];
    EXPECT_EQ(f.start, s.start);
    EXPECT_EQ(f.end, s.end);
    EXPECT_EQ(f.path, s.path);
    ASSERT_TRUE(f.vm_flags && s.vm_flags);
    EXPECT_EQ(f.vm_flags->bits, s.vm_flags->bits) << std::hex << "at " << s.start;
    EXPECT_EQ(f.vm_flags->unknown, s.vm_flags->unknown);
  }
}

TEST(VmFlags, TheIteratorReadsWhatSmapsShowsAfterEveryChange) {
  ASSERT_EQ(geteuid(), 0u) << "the BPF iterator needs root";
  Child child;
  expect_fast_is_smaps(child.pid(), "at start");
  for (char c : {'w', 'd', 'l', 'g', 'm'}) {
    ASSERT_EQ(child.tell(c), 0);
    expect_fast_is_smaps(child.pid(), std::string("after ") + c);
  }
  auto fast = vm_flags::read_fast(child.pid());
  ASSERT_TRUE(fast.ok() && fast->has_value());
  auto wipe = std::find_if((*fast)->begin(), (*fast)->end(),
                           [&](const proc::MapEntry& m) { return m.start == child.wipe_area(); });
  ASSERT_NE(wipe, (*fast)->end());
  EXPECT_TRUE(wipe->vm_flags->has(proc::VmFlag::wf));
}

}  // namespace
}  // namespace ckpt
