/*
 * Entry points and the exception vector table.
 *
 * QEMU starts CPU0 at _start (EL1, MMU off, x0 = DTB address or 0); the
 * other CPUs stay off until CPU0 starts them with PSCI CPU_ON at
 * secondary_entry with x0 = their CPU index (the PSCI context id).
 */
#define STACK_SIZE 0x4000

	.section .text.boot, "ax"
	.global _start
_start:
	msr	daifset, #0xf
	mov	x20, x0
	/* .bss (and the GIC tables at its end) must be zero: the pending
	 * tables are handed to the GIC with PTZ=1. */
	ldr	x1, =__bss_start
	ldr	x2, =__bss_end
1:	cmp	x1, x2
	b.hs	2f
	stp	xzr, xzr, [x1], #16
	b	1b
2:	mov	x0, #0
	bl	cpu_common
	mov	x0, x20
	bl	boot_main
	b	hang

	.global secondary_entry
secondary_entry:
	msr	daifset, #0xf
	mov	x20, x0
	bl	cpu_common
	mov	x0, x20
	bl	secondary_main
	b	hang

/* x0 = CPU index: stack, TPIDR_EL1 (cpu_id()), FP access, vectors.
 * Returns with sp switched, so it must not use the stack itself. */
cpu_common:
	ldr	x1, =cpu_stacks
	mov	x2, #STACK_SIZE
	madd	x1, x0, x2, x1
	add	sp, x1, x2
	msr	tpidr_el1, x0
	mov	x1, #(3 << 20)          /* CPACR_EL1.FPEN: no FP traps */
	msr	cpacr_el1, x1
	ldr	x1, =vectors
	msr	vbar_el1, x1
	isb
	ret

hang:
	wfi
	b	hang

/* Only IRQs from the current EL (SP_ELx) are expected; anything else is a
 * bug and reported by exception_fatal(kind, esr, elr, far). */
	.macro	bad kind
	.balign	0x80
	mov	x0, #\kind
	mrs	x1, esr_el1
	mrs	x2, elr_el1
	mrs	x3, far_el1
	b	exception_fatal
	.endm

	.text
	.balign	0x800
vectors:
	bad	0
	bad	1
	bad	2
	bad	3
	bad	4       /* synchronous, current EL */
	.balign	0x80
	b	irq_entry
	bad	6
	bad	7
	bad	8
	bad	9
	bad	10
	bad	11
	bad	12
	bad	13
	bad	14
	bad	15

/* IRQs never nest (PSTATE.I stays set in the handler), so ELR/SPSR need
 * no saving; only the caller-saved registers the C code may clobber. */
irq_entry:
	sub	sp, sp, #176
	stp	x0, x1, [sp, #0]
	stp	x2, x3, [sp, #16]
	stp	x4, x5, [sp, #32]
	stp	x6, x7, [sp, #48]
	stp	x8, x9, [sp, #64]
	stp	x10, x11, [sp, #80]
	stp	x12, x13, [sp, #96]
	stp	x14, x15, [sp, #112]
	stp	x16, x17, [sp, #128]
	stp	x18, x29, [sp, #144]
	str	x30, [sp, #160]
	bl	irq_handler
	ldp	x0, x1, [sp, #0]
	ldp	x2, x3, [sp, #16]
	ldp	x4, x5, [sp, #32]
	ldp	x6, x7, [sp, #48]
	ldp	x8, x9, [sp, #64]
	ldp	x10, x11, [sp, #80]
	ldp	x12, x13, [sp, #96]
	ldp	x14, x15, [sp, #112]
	ldp	x16, x17, [sp, #128]
	ldp	x18, x29, [sp, #144]
	ldr	x30, [sp, #160]
	add	sp, sp, #176
	eret
