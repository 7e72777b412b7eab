// Keeps known values in callee-saved general registers, in ymm8-ymm15 (or xmm8-xmm15 without
// AVX) and in MXCSR, and checks them in a tight loop until SIGUSR2: a restored process must
// never see a register change under it.
#include <stdint.h>

#include "e2e_prog.h"

static uint8_t ref[8][32] __attribute__((aligned(32)));
static unsigned mx_scratch;

// Returns 0 when the loop ended because of the go flag, else the number of the failed check.
static long spin_avx(void) {
  long result;
  __asm__ volatile(
      "movabs $0x1111222233334444, %%rbx\n\t"
      "movabs $0x5555666677778888, %%r12\n\t"
      "movabs $0x99990000aaaabbbb, %%r13\n\t"
      "movabs $0xccccddddeeeeffff, %%r14\n\t"
      "movabs $0x0123456789abcdef, %%r15\n\t"
      "vmovdqa 0+%[ref], %%ymm8\n\t"
      "vmovdqa 32+%[ref], %%ymm9\n\t"
      "vmovdqa 64+%[ref], %%ymm10\n\t"
      "vmovdqa 96+%[ref], %%ymm11\n\t"
      "vmovdqa 128+%[ref], %%ymm12\n\t"
      "vmovdqa 160+%[ref], %%ymm13\n\t"
      "vmovdqa 192+%[ref], %%ymm14\n\t"
      "vmovdqa 224+%[ref], %%ymm15\n\t"
      "1:\n\t"
      "movabs $0x1111222233334444, %%rax\n\t cmp %%rax, %%rbx\n\t movq $1, %%rax\n\t jne 2f\n\t"
      "movabs $0x5555666677778888, %%rax\n\t cmp %%rax, %%r12\n\t movq $2, %%rax\n\t jne 2f\n\t"
      "movabs $0x99990000aaaabbbb, %%rax\n\t cmp %%rax, %%r13\n\t movq $3, %%rax\n\t jne 2f\n\t"
      "movabs $0xccccddddeeeeffff, %%rax\n\t cmp %%rax, %%r14\n\t movq $4, %%rax\n\t jne 2f\n\t"
      "movabs $0x0123456789abcdef, %%rax\n\t cmp %%rax, %%r15\n\t movq $5, %%rax\n\t jne 2f\n\t"
      "movq $6, %%rax\n\t vxorps 0+%[ref], %%ymm8, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz 2f\n\t"
      "movq $7, %%rax\n\t vxorps 32+%[ref], %%ymm9, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz 2f\n\t"
      "movq $8, %%rax\n\t vxorps 64+%[ref], %%ymm10, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz "
      "2f\n\t"
      "movq $9, %%rax\n\t vxorps 96+%[ref], %%ymm11, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz "
      "2f\n\t"
      "movq $10, %%rax\n\t vxorps 128+%[ref], %%ymm12, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz "
      "2f\n\t"
      "movq $11, %%rax\n\t vxorps 160+%[ref], %%ymm13, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz "
      "2f\n\t"
      "movq $12, %%rax\n\t vxorps 192+%[ref], %%ymm14, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz "
      "2f\n\t"
      "movq $13, %%rax\n\t vxorps 224+%[ref], %%ymm15, %%ymm0\n\t vptest %%ymm0, %%ymm0\n\t jnz "
      "2f\n\t"
      "movq $14, %%rax\n\t"
      "stmxcsr %[mx]\n\t cmpl $0x7f80, %[mx]\n\t jne 2f\n\t"
      "pause\n\t"
      "xor %%eax, %%eax\n\t"
      "cmpl $0, %[go]\n\t"
      "je 1b\n\t"
      "2:\n\t"
      "vzeroupper\n\t"
      : "=a"(result), [mx] "=m"(mx_scratch)
      : [ref] "m"(ref), [go] "m"(e2e_go)
      : "rbx", "r12", "r13", "r14", "r15", "xmm0", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "xmm15", "memory", "cc");
  return result;
}

int main(void) {
  e2e_setup();
  if (!__builtin_cpu_supports("avx")) {
    e2e_say("FAIL this test needs AVX");
    return 1;
  }
  for (int r = 0; r < 8; ++r)
    for (int i = 0; i < 32; ++i) ref[r][i] = (uint8_t)(r * 37 + i * 11 + 5);
  // Round toward zero with all exceptions masked: 0x1f80 | 0x6000.
  unsigned mxcsr = 0x7f80;
  __asm__ volatile("ldmxcsr %0" ::"m"(mxcsr));
  e2e_ready();
  long failed = spin_avx();
  E2E_CHECK(failed == 0, "register check %ld saw a changed value", failed);
  return e2e_finish();
}
