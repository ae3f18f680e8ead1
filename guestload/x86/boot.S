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
#define AP_STACKS 7                     /* APs: up to 8 CPUs with the BSP */
#define AP_STACK_SHIFT 12               /* 4 KiB each */

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

/*
 * Application processors. The BSP copies [ap_tramp_start, ap_tramp_end) to a
 * page below 1 MiB and sends INIT, SIPI, SIPI with that page as the vector:
 * each AP wakes in real mode at CS = page >> 4, IP = 0. The trampoline only
 * loads our GDT and enters protected mode; everything after runs in place in
 * the image, so only relative addressing is used before the far jump (its
 * target and the GDT's base are absolute: the image does not move).
 */
        .code16
        .globl ap_tramp_start, ap_tramp_end
        .balign 16
ap_tramp_start:
        cli
        cld
        mov %cs, %ax
        mov %ax, %ds
        lgdtl (ap_gdtr - ap_tramp_start)
        mov %cr0, %eax
        or $1, %eax                     /* CR0.PE */
        mov %eax, %cr0
        ljmpl $0x08, $ap_entry32
        .balign 8
ap_gdtr:
        .word gdt_end - gdt - 1
        .long gdt
ap_tramp_end:

        .code32
/*
 * Each AP takes the next CPU index (the BSP is 0) by an atomic increment,
 * so no APIC ID needs to be known, and runs on its own stack.
 */
ap_entry32:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %ax, %fs
        mov %ax, %gs
        mov $1, %eax
        lock xadd %eax, ap_arrived
        inc %eax                        /* this CPU's index, 1.. */
        cmp $AP_STACKS, %eax
        ja 2f                           /* more vCPUs than stacks: stay out */
        mov %eax, %ecx
        shl $AP_STACK_SHIFT, %ecx
        lea ap_stacks(%ecx), %esp       /* top of stack index-1 */
        push %eax
        call ap_main
2:      cli
        hlt
        jmp 2b

        .section .rodata
        .balign 8
gdt:
        .quad 0
        .quad 0x00cf9a000000ffff        /* 0x08: code, flat 4 GiB, 32-bit */
        .quad 0x00cf92000000ffff        /* 0x10: data, flat 4 GiB */
gdt_end:

        .data
        .balign 4
        .globl ap_arrived
ap_arrived:
        .long 0                         /* APs that reached protected mode */

        .bss
        .align 16
        .space 8192
stack_top:
        .balign 16
ap_stacks:
        .space AP_STACKS << AP_STACK_SHIFT

        .section .note.GNU-stack, "", @progbits
