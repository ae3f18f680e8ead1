/*
 * Entry for the wave guest. QEMU's -kernel loader recognises the multiboot v1
 * header below (it scans the first 8 KiB of the file), loads the ELF segments
 * and jumps to _start already in 32-bit protected mode with flat segments,
 * paging and interrupts off, EAX = 0x2badb002 and EBX = multiboot info.
 * We stay in that mode (no paging): this host's KVM (kvm_pvm) hangs 64-bit
 * Linux guests, and unpaged 32-bit code is the least it has to get right.
 */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000002     /* ask for mem_lower/mem_upper and the mmap */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        cli
        cld
        /* The loader gives us no usable stack; ours lives in .bss so it is
         * inside the reported image footprint. We never reload segment
         * registers, so the loader's (possibly stale) GDT is never consulted. */
        mov $stack_top, %esp
        push %ebx
        push %eax
        call wave_main
1:      cli
        hlt
        jmp 1b

        .bss
        .align 16
        .space 8192
stack_top:

        .section .note.GNU-stack, "", @progbits
