/*
 * Identity map with 1 GiB level-1 blocks: 0-1 GiB (all of virt's MMIO,
 * GIC, UART, fw_cfg) as Device-nGnRnE, 1-4 GiB (RAM) as Normal write-back;
 * RAM above 4 GiB (virt's RAM is one piece from 1 GiB) once its size is known
 * (mmu_map_ram), up to the 39-bit VA's 512 GiB.
 *
 * Why bother in a test guest: with the MMU off every data access is
 * Device memory, where exclusives (our spinlock) are not guaranteed and
 * unaligned accesses fault; and on a KVM host the wave and the GIC tables
 * would be uncached, i.e. incoherent with how the host-side ITS reads them.
 */
#include "lib.h"
#include "mmu.h"

#define ATTR_DEVICE 0   /* MAIR index */
#define ATTR_NORMAL 1

#define BLK_VALID   (1UL << 0)   /* bit1 = 0: block descriptor */
#define BLK_ATTR(i) ((u64)(i) << 2)
#define BLK_SH_INNER (3UL << 8)
#define BLK_AF      (1UL << 10)
#define BLK_PXN     (1UL << 53)
#define BLK_UXN     (1UL << 54)

static u64 l1_table[512] __attribute__((aligned(4096)));

void mmu_build_tables(void)
{
	l1_table[0] = 0 | BLK_VALID | BLK_ATTR(ATTR_DEVICE) | BLK_AF | BLK_PXN | BLK_UXN;
	for (u64 i = 1; i < 4; i++)
		l1_table[i] = (i << 30) | BLK_VALID | BLK_ATTR(ATTR_NORMAL) | BLK_SH_INNER | BLK_AF;
	dsb_sy();
}

void mmu_map_ram(u64 top)
{
	u64 last = (top + (1UL << 30) - 1) >> 30;

	if (last > 512)
		last = 512;
	for (u64 i = 4; i < last; i++)
		l1_table[i] = (i << 30) | BLK_VALID | BLK_ATTR(ATTR_NORMAL) | BLK_SH_INNER | BLK_AF;
	dsb_sy();
	asm volatile("tlbi vmalle1\n dsb nsh\n isb" ::: "memory");
}

void mmu_enable(void)
{
	u64 pa_range = read_sysreg(id_aa64mmfr0_el1) & 0xf;
	if (pa_range > 5)
		pa_range = 5;   /* 48 bits is plenty; 52-bit needs more setup */

	write_sysreg(0xff00UL, mair_el1);   /* attr0 = Device-nGnRnE, attr1 = Normal WB RA/WA */
	write_sysreg(25UL                  /* T0SZ: 39-bit VA, walk starts at level 1 */
		     | (1UL << 8)          /* IRGN0: WB WA */
		     | (1UL << 10)         /* ORGN0: WB WA */
		     | (3UL << 12)         /* SH0: inner shareable */
		     | (0UL << 14)         /* TG0: 4 KiB */
		     | (1UL << 23)         /* EPD1: no TTBR1 walks */
		     | (2UL << 30)         /* TG1: 4 KiB (unused but defined) */
		     | (pa_range << 32),   /* IPS */
		     tcr_el1);
	write_sysreg((u64)l1_table, ttbr0_el1);
	isb();
	asm volatile("tlbi vmalle1\n dsb nsh\n isb" ::: "memory");

	u64 sctlr = read_sysreg(sctlr_el1);
	sctlr |= (1UL << 0) | (1UL << 2) | (1UL << 12);   /* M, C, I */
	sctlr &= ~((1UL << 1) | (1UL << 19));             /* no alignment checks, no WXN */
	write_sysreg(sctlr, sctlr_el1);
	isb();
}
