// arch::restarted_call: which call a thread in restart_syscall resumes, read from the bytes
// before its syscall instruction.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <cstdint>
#include <vector>

#include "arch/x86_64/syscall_restart.hpp"

namespace ckpt::arch {
namespace {

TEST(RestartedCall, GlibcsLoadOfTheNumberRightBeforeTheInstructionNamesTheCall) {
  // mov $0xe6,%eax (clock_nanosleep), as glibc's __clock_nanosleep has it
  std::vector<uint8_t> code = {0x8b, 0x74, 0x24, 0x0c, 0xb8, 0xe6, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), SYS_clock_nanosleep);
  // mov $0xca,%eax; xor $0x80,%sil (futex, with an instruction between)
  code = {0xba, 0x02, 0x00, 0x00, 0x00, 0xb8, 0xca, 0x00, 0x00, 0x00, 0x40, 0x80, 0xf6, 0x80};
  EXPECT_EQ(restarted_call(code), SYS_futex);
  // mov $0x7,%rax (poll), the 64-bit form
  code = {0x48, 0xc7, 0xc0, 0x07, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), SYS_poll);
}

TEST(RestartedCall, ANumberFromARegisterOrACallWithoutARestartBlockNamesNothing) {
  // glibc's syscall(): mov %rdi,%rax ... mov 0x8(%rsp),%r9
  std::vector<uint8_t> code = {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89,
                               0xd6, 0x48, 0x89, 0xca, 0x4d, 0x89, 0xc2, 0x4d,
                               0x89, 0xc8, 0x4c, 0x8b, 0x4c, 0x24, 0x08};
  EXPECT_EQ(restarted_call(code), 0);
  // mov $0x0,%eax (read): repeated by the kernel without a restart block, never in restart_syscall
  code = {0xb8, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), 0);
  EXPECT_EQ(restarted_call({}), 0);
}

TEST(RestartedCall, TheLoadNearestTheInstructionCounts) {
  // mov $0x23,%eax (nanosleep), then mov $0xe6,%eax (clock_nanosleep) nearer
  std::vector<uint8_t> code = {0xb8, 0x23, 0x00, 0x00, 0x00, 0xb8, 0xe6, 0x00, 0x00, 0x00};
  EXPECT_EQ(restarted_call(code), SYS_clock_nanosleep);
}

}  // namespace
}  // namespace ckpt::arch
