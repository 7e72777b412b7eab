// Code the rollback helper makes the target and its snapshot processes run (x86-64). Written as
// a file-scope asm block because the project builds no assembler sources.
//
// ckpt_rb_syscall_gadget: a `syscall` instruction for system calls injected with ptrace.
//
// ckpt_rb_snapshot_park: where a snapshot process (a fork of the target that holds one
// checkpoint's memory) spends its life. It must not change a byte of that memory, so it uses no
// stack and no thread-local storage: registers and the shared page only. On entry rdi = the
// helper's pid, rsi = a struct pollfd in the shared page ({fd 0, POLLIN}), rdx = a 16-byte name.
// It names itself, closes every descriptor it inherited (so that it never keeps a socket, a pipe
// or a lock of the program alive), opens a pidfd of the helper as fd 0 and waits for it to become
// readable, that is for the helper to end; then it exits. The helper kills it earlier when the
// checkpoint is dropped. The helper blocks every signal before it lets a snapshot run.
#include "app/rollback_shared.hpp"

asm(R"(
        .pushsection .text
        .globl  ckpt_rb_syscall_gadget
        .type   ckpt_rb_syscall_gadget, @function
ckpt_rb_syscall_gadget:
        syscall
        int3
        .size   ckpt_rb_syscall_gadget, .-ckpt_rb_syscall_gadget

        .globl  ckpt_rb_snapshot_park
        .type   ckpt_rb_snapshot_park, @function
ckpt_rb_snapshot_park:
        mov     %rdi, %r12
        mov     %rsi, %r13
        mov     $157, %eax
        mov     $15, %edi
        mov     %rdx, %rsi
        syscall
        mov     $436, %eax
        xor     %edi, %edi
        mov     $-1, %esi
        xor     %edx, %edx
        syscall
        mov     $434, %eax
        mov     %r12, %rdi
        xor     %esi, %esi
        syscall
        test    %rax, %rax
        js      2f
1:      mov     $7, %eax
        mov     %r13, %rdi
        mov     $1, %esi
        mov     $-1, %edx
        syscall
        cmp     $-4, %rax
        je      1b
2:      mov     $231, %eax
        xor     %edi, %edi
        syscall
        ud2
        .size   ckpt_rb_snapshot_park, .-ckpt_rb_snapshot_park
        .popsection
)");
// The system calls above, in order: prctl(PR_SET_NAME), close_range(0, ~0U, 0), pidfd_open,
// poll (again after EINTR), exit_group(0).
