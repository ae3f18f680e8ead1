/*
 * Small freestanding helpers shared by every file of the arm64 ITS guest:
 * fixed-width types, MMIO accessors, system-register access, barriers and
 * the record printer.  Nothing here depends on a libc.
 */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define MAX_CPUS 8          /* bounded by the per-CPU stacks and pending tables */
#define STACK_SIZE 0x4000   /* must match the value used in entry.S */

/* Board facts of QEMU's "virt" machine (hw/arm/virt.c memory map). */
#define RAM_BASE 0x40000000UL

#define read_sysreg(r) ({ u64 __v; asm volatile("mrs %0, " #r : "=r"(__v)); __v; })
#define write_sysreg(v, r) asm volatile("msr " #r ", %0" : : "r"((u64)(v)) : "memory")

static inline void isb(void) { asm volatile("isb" ::: "memory"); }
static inline void dsb_sy(void) { asm volatile("dsb sy" ::: "memory"); }
static inline void dsb_ishst(void) { asm volatile("dsb ishst" ::: "memory"); }
static inline void cpu_relax(void) { asm volatile("yield" ::: "memory"); }
static inline void wfi(void) { asm volatile("wfi" ::: "memory"); }
static inline void irq_enable(void) { asm volatile("msr daifclr, #2" ::: "memory"); }
static inline void irq_disable(void) { asm volatile("msr daifset, #2" ::: "memory"); }

/*
 * MMIO accessors.  Device registers are mapped Device-nGnRnE by mmu.c, so
 * the compiler only has to be stopped from merging or reordering them.
 */
static inline u8 readb(u64 a) { return *(volatile u8 *)a; }
static inline u32 readl(u64 a) { return *(volatile u32 *)a; }
static inline u64 readq(u64 a) { return *(volatile u64 *)a; }
static inline void writeb(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void writew(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void writel(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void writeq(u64 a, u64 v) { *(volatile u64 *)a = v; }

/* Index of the running CPU; entry.S stores it in TPIDR_EL1. */
static inline unsigned cpu_id(void) { return (unsigned)read_sysreg(tpidr_el1); }

/* Generic-timer based time, used for bounded waits and rates. */
static inline u64 now_ticks(void) { isb(); return read_sysreg(cntvct_el0); }
static inline u64 ticks_per_sec(void) { return read_sysreg(cntfrq_el0); }
u64 us_to_ticks(u64 us);
void udelay(u64 us);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/*
 * Records: printf-like with a deliberately tiny format language so every
 * argument has one type.  %d = u64 decimal, %x = u64 as 0x-prefixed lowercase
 * hex, %s = string.  Callers must pass u64 for %d/%x.
 */
void record(const char *fmt, ...);
/* The same format, as a plain line without the record prefix (for the
 * kvm-unit-tests handshake: "PASS: ...", "Now migrate the VM, ..."). */
void say(const char *fmt, ...);
void halt(void) __attribute__((noreturn));

#endif
