// arch::follows_call: whether the bytes before an address end with a call, so that the address
// is one a call returns to.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "arch/x86_64/call_site.hpp"

namespace ckpt::arch {
namespace {

TEST(FollowsCall, TheCallsCompilersEmitAreRecognised) {
  // glibc's clock_gettime calling the vdso through a register: call *%rax
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0x48, 0x89, 0xc7, 0xff, 0xd0}));
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0x41, 0xff, 0xd3}));              // call *%r11
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0xe8, 0x10, 0x20, 0x00, 0x00}));  // call rel32
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0xff, 0x15, 0x00, 0x10, 0x00, 0x00}));  // *(%rip)
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0xff, 0x50, 0x08}));  // *0x8(%rax)
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0xff, 0x90, 0x00, 0x01, 0x00, 0x00}));  // disp32
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0xff, 0x54, 0x24, 0x08}));  // *0x8(%rsp)
  EXPECT_TRUE(follows_call(std::vector<uint8_t>{0xff, 0x13}));              // call *(%rbx)
}

TEST(FollowsCall, OtherCodeAndJumpsAreNotCalls) {
  // A function's first bytes after padding: nop; push %rbp; mov %rsp,%rbp
  EXPECT_FALSE(follows_call(std::vector<uint8_t>{0x90, 0x90, 0x55, 0x48, 0x89, 0xe5}));
  EXPECT_FALSE(follows_call(std::vector<uint8_t>{0xff, 0xe0}));  // jmp *%rax (ff /4)
  EXPECT_FALSE(follows_call(std::vector<uint8_t>{0xe9, 0x10, 0x20, 0x00, 0x00}));  // jmp rel32
  EXPECT_FALSE(follows_call(std::vector<uint8_t>{0xc3}));                          // ret
  EXPECT_FALSE(follows_call(std::vector<uint8_t>{}));
}

}  // namespace
}  // namespace ckpt::arch
