/* Reset-vector "BIOS" for Bochs (64 KiB image loaded at 0xFFFF0000).
 *
 * Real mode -> 32-bit protected mode -> 64-bit long mode, then jump to the
 * payload image that Bochs preloaded into RAM at IMAGE_BASE (optramimage).
 *   - identity maps the first 4 GiB with 2 MiB pages (tables at 0x1000-0x6fff)
 *   - CR0: PE|MP|NE|PG, EM/CD/NW cleared
 *   - CR4: PAE|OSFXSR|OSXMMEXCPT|OSXSAVE
 *   - XCR0 = x87|SSE|AVX|opmask|ZMM_Hi256|Hi16_ZMM|XTILECFG|XTILEDATA
 * Assemble: as --64 rom.S; link: ld -Ttext=0xffff0000 --oformat binary.
 */
#define IMAGE_BASE 0x800000
#define PML4 0x1000
#define PDPT 0x2000
#define PD   0x3000            /* 4 page directories: 0x3000-0x6fff */
#define XCR0_BITS 0x600e7      /* bits 0,1,2,5,6,7,17,18 */

        .text
rom_start:
        .skip 0xf000, 0xff

        .code16
        .globl _start
_start:
real_entry:                    /* CS.base = 0xffff0000 here */
        cli
        cld
        lgdtl %cs:(gdt_desc - rom_start)
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x08, $pm32

        .code32
pm32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %fs
        movw %ax, %gs

        /* page tables */
        movl $PML4, %edi
        xorl %eax, %eax
        movl $(0x6000 / 4), %ecx
        rep stosl
        movl $(PDPT | 3), PML4
        movl $(PD + 0x0000 + 3), PDPT + 0
        movl $(PD + 0x1000 + 3), PDPT + 8
        movl $(PD + 0x2000 + 3), PDPT + 16
        movl $(PD + 0x3000 + 3), PDPT + 24
        movl $PD, %edi
        movl $0x83, %eax       /* present | writable | 2 MiB page */
        xorl %edx, %edx
        movl $2048, %ecx
1:      movl %eax, (%edi)
        movl %edx, 4(%edi)
        addl $0x200000, %eax
        adcl $0, %edx
        addl $8, %edi
        loop 1b

        movl %cr4, %eax
        orl $((1 << 5) | (1 << 9) | (1 << 10) | (1 << 18)), %eax
        movl %eax, %cr4
        movl $PML4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx /* EFER.LME */
        rdmsr
        orl $(1 << 8), %eax
        wrmsr
        movl %cr0, %eax
        andl $~0x60000004, %eax            /* clear CD, NW, EM */
        orl $0x80000023, %eax              /* PG | NE | MP | PE */
        movl %eax, %cr0
        ljmpl $0x18, $lm64

        .code64
lm64:
        xorl %ecx, %ecx
        xorl %edx, %edx
        movl $XCR0_BITS, %eax
        xsetbv
        movl $IMAGE_BASE, %eax
        jmp *%rax

        .p2align 3
gdt:    .quad 0
        .quad 0x00cf9a000000ffff           /* 0x08: code32 */
        .quad 0x00cf92000000ffff           /* 0x10: data */
        .quad 0x00af9a000000ffff           /* 0x18: code64 */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        . = rom_start + 0xfff0             /* reset vector */
        .code16
        jmp real_entry
        . = rom_start + 0x10000
