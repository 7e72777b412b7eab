#include "arch/x86_64/sigreturn.hpp"

#include <cpuid.h>
#include <string.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace ckpt::arch::x86_64 {
namespace {

// The kernel's x86-64 signal frame (arch/x86/include/asm/sigframe.h, uapi asm/sigcontext.h and
// asm/ucontext.h), field for field.
struct SigContext {
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2;
  uint64_t fpstate;  // user address of the XSAVE area
  uint64_t reserved1[8];
};

struct StackT {
  uint64_t sp;
  int32_t flags;
  int32_t pad;
  uint64_t size;
};

struct UContext {
  uint64_t flags;
  uint64_t link;
  StackT stack;
  SigContext mcontext;
  uint64_t sigmask;
};

struct RtSigframe {
  uint64_t pretcode;  // where the handler's `ret` goes: the rt_sigreturn gadget
  UContext uc;
  uint8_t info[128];  // siginfo_t, unused by rt_sigreturn
};

static_assert(sizeof(SigContext) == 256);
static_assert(offsetof(SigContext, cs) == 144 && offsetof(SigContext, fpstate) == 184);
static_assert(sizeof(UContext) == 304 && offsetof(UContext, mcontext) == 40);
static_assert(sizeof(RtSigframe) == 440);

// The XSAVE area's software-reserved bytes (struct _fpx_sw_bytes), which say how much of the area
// is valid; the kernel only trusts more than the legacy FXSAVE part when both magics are right.
struct FpxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;  // xstate_size + the trailing magic2
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

constexpr uint32_t kFpXstateMagic1 = 0x46505853;
constexpr uint32_t kFpXstateMagic2 = 0x46505845;
constexpr size_t kSwBytesOffset = 464;  // in the 512-byte legacy area
constexpr size_t kXsaveHeader = 512;    // XSTATE_BV is its first quadword
constexpr size_t kMinXsave = 512 + 64;  // legacy area and header
constexpr uint64_t kFpAndSse = 0x3;     // always restored
constexpr uint64_t kUcFpXstate = 0x1;   // UC_FP_XSTATE
constexpr uint64_t kUcSigcontextSs = 0x2;
constexpr uint64_t kUcStrictRestoreSs = 0x4;
constexpr uint16_t kUserCs64 = 0x33;
// rt_sigreturn also sets the alternate signal stack from uc_stack, ignoring every error but a
// fault. An invalid mode makes that call fail (EINVAL) and leaves the thread's own setting alone,
// which we could not read without injecting a call first.
constexpr int32_t kLeaveAltstackAlone = 3;

// The end of the last component present in `xstate_bv`, in the standard (not compacted) layout
// ptrace hands out: CPUID leaf 0xD sub-leaf i gives component i's size (EAX) and offset (EBX).
// Not the full length of the regset: on CPUs with AMX that length counts tile data a thread
// without permission for it cannot take back, and the kernel would then refuse the extended part.
size_t xsave_size_for(uint64_t xstate_bv) {
  size_t end = kMinXsave;
  for (unsigned i = 2; i < 64; ++i) {
    if (!((xstate_bv >> i) & 1)) continue;
    unsigned size = 0, offset = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(0xd, i, &size, &offset, &ecx, &edx) && size > 0)
      end = std::max<size_t>(end, size_t{offset} + size);
  }
  return end;
}

// `xor` between two registers (31 /r or 33 /r, register form, optional REX prefix) whose
// destination is not the stack pointer. Returns its length, 0 for anything else.
size_t plain_xor_length(std::span<const uint8_t> code, size_t at) {
  size_t i = at;
  uint8_t rex = 0;
  if (i < code.size() && (code[i] & 0xf0) == 0x40) rex = code[i++];
  if (i + 1 >= code.size()) return 0;
  uint8_t op = code[i], modrm = code[i + 1];
  if ((op != 0x31 && op != 0x33) || (modrm & 0xc0) != 0xc0) return 0;
  unsigned dest =
      op == 0x31 ? (modrm & 7u) | ((rex & 1u) << 3) : ((modrm >> 3) & 7u) | ((rex & 4u) << 1);
  if (dest == 4) return 0;  // %rsp / %esp
  return i + 2 - at;
}

}  // namespace

std::optional<size_t> find_syscall_then_ret(std::span<const uint8_t> code) {
  for (size_t i = 0; i + 2 < code.size(); ++i) {
    if (code[i] != 0x0f || code[i + 1] != 0x05) continue;
    size_t j = i + 2;
    while (j < code.size() && j - i < kMaxGadgetLength) {
      if (code[j] == 0xc3) return i;
      size_t n = plain_xor_length(code, j);
      if (n == 0) break;
      j += n;
    }
  }
  return std::nullopt;
}

std::optional<size_t> find_rt_sigreturn(std::span<const uint8_t> code) {
  static constexpr uint8_t kMovEax[] = {0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
  static constexpr uint8_t kMovRax[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
  std::optional<size_t> best;
  for (std::span<const uint8_t> pattern :
       {std::span<const uint8_t>(kMovEax), std::span<const uint8_t>(kMovRax)}) {
    const void* hit = ::memmem(code.data(), code.size(), pattern.data(), pattern.size());
    if (!hit) continue;
    size_t at = static_cast<size_t>(static_cast<const uint8_t*>(hit) - code.data());
    if (!best || at < *best) best = at;
  }
  return best;
}

Result<SigreturnFrame> build_sigreturn_frame(const user_regs_struct& regs, uint64_t sigmask,
                                             std::span<const uint8_t> xstate, uint64_t top,
                                             uint64_t rt_sigreturn) {
  if (regs.cs != kUserCs64) return errorf("the thread is not in 64-bit mode (cs {:#x})", regs.cs);
  if (xstate.size() < kMinXsave)
    return errorf("its XSAVE area has {} bytes, fewer than {}", xstate.size(), kMinXsave);
  uint64_t xstate_bv = 0;
  std::memcpy(&xstate_bv, xstate.data() + kXsaveHeader, sizeof xstate_bv);
  size_t size = xsave_size_for(xstate_bv);
  if (size > xstate.size())
    return errorf("its XSAVE area has {} bytes, its components end at {}", xstate.size(), size);
  // As the kernel does: the XSAVE area 64-byte aligned (XRSTOR faults otherwise), the frame below
  // it with the stack pointer after `ret` 16-byte aligned.
  uint64_t fpstate = (top - size - sizeof(kFpXstateMagic2)) & ~uint64_t{63};
  uint64_t frame = ((fpstate - sizeof(RtSigframe)) & ~uint64_t{15}) - 8;
  SigreturnFrame out;
  out.addr = frame;
  out.bytes.assign(fpstate + size + sizeof(kFpXstateMagic2) - frame, 0);

  RtSigframe f{};
  f.pretcode = rt_sigreturn;
  f.uc.flags = kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs;
  f.uc.stack.flags = kLeaveAltstackAlone;
  SigContext& sc = f.uc.mcontext;
  sc.r8 = regs.r8, sc.r9 = regs.r9, sc.r10 = regs.r10, sc.r11 = regs.r11;
  sc.r12 = regs.r12, sc.r13 = regs.r13, sc.r14 = regs.r14, sc.r15 = regs.r15;
  sc.rdi = regs.rdi, sc.rsi = regs.rsi, sc.rbp = regs.rbp, sc.rbx = regs.rbx;
  sc.rdx = regs.rdx, sc.rax = regs.rax, sc.rcx = regs.rcx, sc.rsp = regs.rsp;
  sc.rip = regs.rip, sc.eflags = regs.eflags;
  sc.cs = static_cast<uint16_t>(regs.cs);
  sc.ss = static_cast<uint16_t>(regs.ss);
  sc.fpstate = fpstate;
  f.uc.sigmask = sigmask;
  std::memcpy(out.bytes.data(), &f, sizeof f);

  uint8_t* area = out.bytes.data() + (fpstate - frame);
  std::memcpy(area, xstate.data(), size);
  FpxSwBytes sw{kFpXstateMagic1,
                static_cast<uint32_t>(size + sizeof(kFpXstateMagic2)),
                xstate_bv | kFpAndSse,
                static_cast<uint32_t>(size),
                {}};
  std::memcpy(area + kSwBytesOffset, &sw, sizeof sw);
  std::memcpy(area + size, &kFpXstateMagic2, sizeof kFpXstateMagic2);
  return out;
}

std::optional<FrameContents> parse_sigreturn_frame(const SigreturnFrame& f) {
  if (f.bytes.size() < sizeof(RtSigframe)) return std::nullopt;
  RtSigframe rt;
  std::memcpy(&rt, f.bytes.data(), sizeof rt);
  const SigContext& sc = rt.uc.mcontext;
  if (sc.fpstate < f.addr || sc.fpstate + kMinXsave > f.addr + f.bytes.size()) return std::nullopt;
  FrameContents c;
  c.return_address = rt.pretcode;
  c.sigmask = rt.uc.sigmask;
  c.regs.r8 = sc.r8, c.regs.r9 = sc.r9, c.regs.r10 = sc.r10, c.regs.r11 = sc.r11;
  c.regs.r12 = sc.r12, c.regs.r13 = sc.r13, c.regs.r14 = sc.r14, c.regs.r15 = sc.r15;
  c.regs.rdi = sc.rdi, c.regs.rsi = sc.rsi, c.regs.rbp = sc.rbp, c.regs.rbx = sc.rbx;
  c.regs.rdx = sc.rdx, c.regs.rax = sc.rax, c.regs.rcx = sc.rcx, c.regs.rsp = sc.rsp;
  c.regs.rip = sc.rip, c.regs.eflags = sc.eflags, c.regs.cs = sc.cs, c.regs.ss = sc.ss;
  const uint8_t* area = f.bytes.data() + (sc.fpstate - f.addr);
  size_t room = f.addr + f.bytes.size() - sc.fpstate;
  FpxSwBytes sw;
  std::memcpy(&sw, area + kSwBytesOffset, sizeof sw);
  c.xstate_size = sw.xstate_size;
  c.xfeatures = sw.xfeatures;
  uint32_t magic2 = 0;
  if (sw.xstate_size + sizeof magic2 <= room)
    std::memcpy(&magic2, area + sw.xstate_size, sizeof magic2);
  c.magic_ok = sw.magic1 == kFpXstateMagic1 && magic2 == kFpXstateMagic2 &&
               sw.extended_size == sw.xstate_size + sizeof magic2 && sc.fpstate % 64 == 0;
  c.xstate.assign(area, area + std::min<size_t>(sw.xstate_size, room));
  return c;
}

}  // namespace ckpt::arch::x86_64
