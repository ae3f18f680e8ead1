/*
 * 64-bit capability probe. Boots like the wave guest (multiboot v1, entered
 * in 32-bit protected mode), prints "QMPCTL probe64 boot", switches to long
 * mode (identity-mapped first 2 MiB, PAE + EFER.LME + paging, far jump to a
 * 64-bit code segment) and prints "QMPCTL probe64 ok" from 64-bit code, then
 * halts (or exits QEMU, see below). The "boot" line lets the controller tell "this accelerator cannot
 * run 64-bit code" apart from "the guest never started at all".
 */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0
#define COM1     0x3f8
#define MSR_EFER 0xc0000080
#define EFER_LME (1 << 8)
#define EFER_LMA (1 << 10)

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

/* Poll-and-send a NUL-terminated string. A macro, not a function, so the
 * same source assembles correctly for both the 32- and 64-bit halves. */
.macro PUTS msg
        mov $\msg, %esi
1:      movb (%esi), %bl
        test %bl, %bl
        jz 3f
        mov $COM1 + 5, %dx
2:      inb %dx, %al
        test $0x20, %al
        jz 2b
        mov $COM1, %dx
        mov %bl, %al
        outb %al, %dx
        inc %esi
        jmp 1b
3:
.endm

        .text
        .code32
        .globl _start
_start:
        cli
        cld
        mov $stack_top, %esp
        PUTS msg_boot

        /* Zero the page tables: fresh RAM is zero, but do not depend on it. */
        mov $pml4, %edi
        mov $(3 * 4096 / 4), %ecx
        xor %eax, %eax
        rep stosl
        movl $(pdpt + 3), pml4          /* present | writable */
        movl $(pd + 3), pdpt
        movl $0x83, pd                  /* 2 MiB page at 0: present|rw|PS */

        lgdt gdt_ptr
        mov %cr4, %eax
        or $(1 << 5), %eax              /* PAE */
        mov %eax, %cr4
        mov $pml4, %eax
        mov %eax, %cr3
        mov $MSR_EFER, %ecx
        rdmsr
        or $EFER_LME, %eax
        wrmsr
        mov %cr0, %eax
        or $0x80000001, %eax            /* PG | PE */
        mov %eax, %cr0
        ljmp $0x08, $long_mode

        .code64
long_mode:
        mov $0x10, %eax
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %ss
        /* Only claim success if the CPU agrees long mode is active. */
        mov $MSR_EFER, %ecx
        rdmsr
        test $EFER_LMA, %eax
        jz no_lma
        PUTS msg_ok
        mov $0, %al
        jmp done
no_lma:
        PUTS msg_nolma
        mov $1, %al
done:
        /* With "-device isa-debug-exit" QEMU exits at once, status
         * (al << 1) | 1: 1 = ok, 3 = no-lma. Without it the write is
         * ignored and we just halt; the controller kills QEMU. */
        mov $0xf4, %dx
        outb %al, %dx
halt:
        cli
        hlt
        jmp halt

        .section .rodata
msg_boot:  .asciz "QMPCTL probe64 boot\n"
msg_ok:    .asciz "QMPCTL probe64 ok\n"
msg_nolma: .asciz "QMPCTL probe64 fail reason=no-lma\n"

        .align 8
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code (L=1) */
        .quad 0x00cf92000000ffff        /* 0x10: flat data */
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .long gdt

        .bss
        .align 4096
pml4:   .space 4096
pdpt:   .space 4096
pd:     .space 4096
        .space 4096
stack_top:

        .section .note.GNU-stack, "", @progbits
