#include "arch/x86_64/call_site.hpp"

namespace ckpt::arch {
namespace {

// ModRM of `call *...` (opcode 0xff, reg field 2) with the given addressing mode.
bool is_indirect_call_modrm(uint8_t modrm, uint8_t mod) {
  return (modrm >> 6) == mod && ((modrm >> 3) & 7) == 2;
}

}  // namespace

bool follows_call(std::span<const uint8_t> code) {
  size_t n = code.size();
  auto at = [&](size_t back) { return code[n - back]; };
  if (n >= 5 && at(5) == 0xe8) return true;  // call rel32
  // call *%reg (ff d0+r, with or without a REX prefix), call *(%reg) (ff 10+r)
  if (n >= 2 && at(2) == 0xff && is_indirect_call_modrm(at(1), 3)) return true;
  if (n >= 2 && at(2) == 0xff && is_indirect_call_modrm(at(1), 0) && (at(1) & 7) != 4 &&
      (at(1) & 7) != 5)
    return true;
  // call *disp8(%reg) (ff 50+r d8), call *disp8(%reg,idx) (ff 54 sib d8)
  if (n >= 3 && at(3) == 0xff && is_indirect_call_modrm(at(2), 1) && (at(2) & 7) != 4) return true;
  if (n >= 4 && at(4) == 0xff && at(3) == 0x54) return true;
  // call *disp32(%rip) (ff 15 d32), call *disp32(%reg) (ff 90+r d32)
  if (n >= 6 && at(6) == 0xff &&
      (at(5) == 0x15 || (is_indirect_call_modrm(at(5), 2) && (at(5) & 7) != 4)))
    return true;
  if (n >= 7 && at(7) == 0xff && at(6) == 0x94) return true;  // call *disp32(%reg,idx)
  return false;
}

}  // namespace ckpt::arch
