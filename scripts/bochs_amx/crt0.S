/* 64-bit entry of the payload image (placed first, at IMAGE_BASE). The ROM
 * stub (rom.S) arrives here in long mode with interrupts disabled. */
        .section .text.start, "ax"
        .code64
        .globl _start
_start:
        movabsq $__bss_start, %rdi          /* zero .bss (includes the stack) */
        movabsq $__bss_end, %rcx
        subq %rdi, %rcx
        shrq $3, %rcx                       /* both ends are 64-byte aligned */
        xorl %eax, %eax
        rep stosq
        movabsq $__stack_top, %rsp
        xorl %ebp, %ebp
        call __genrt_init                   /* IDT + C++ constructors */
        call payload_main
        call __genrt_done                   /* prints marker, shuts Bochs down */
1:      hlt
        jmp 1b

/* Exception stubs: frame for __genrt_exception = {vector, error, rip, ...}. */
        .p2align 4
        .globl __genrt_exc_stubs
__genrt_exc_stubs:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .p2align 4
        .if (\v == 8) || (\v == 10) || (\v == 11) || (\v == 12) || (\v == 13) || (\v == 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
        .else
        pushq $0
        .endif
        pushq $\v
        jmp exc_common
        .endr
exc_common:
        movq %rsp, %rdi
        andq $-16, %rsp
        call __genrt_exception
        .section .note.GNU-stack, "", @progbits
