/*
 * GICv3 bring-up for LPIs.  LPIs need: affinity routing in the distributor
 * (GICD_CTLR.ARE), group 1 enabled, and per redistributor a property table
 * (priority/enable byte per LPI, shared) and a pending table (one bit per
 * INTID, private), then GICR_CTLR.EnableLPIs.  SGIs/PPIs/SPIs are unused.
 */
#include "gic.h"

#define GICD_CTLR  0x0000
#define GICD_TYPER 0x0004
#define GICD_CTLR_RWP (1u << 31)

#define GICR_CTLR      0x0000
#define GICR_TYPER     0x0008
#define GICR_WAKER     0x0014
#define GICR_PROPBASER 0x0070
#define GICR_PENDBASER 0x0078
#define GICR_CTLR_ENABLE_LPIS (1u << 0)
#define GICR_TYPER_VLPIS (1u << 1)
#define GICR_TYPER_LAST  (1u << 4)
#define GICR_WAKER_PROCESSOR_SLEEP (1u << 1)
#define GICR_WAKER_CHILDREN_ASLEEP (1u << 2)

#define SGI_BASE 0x10000
#define GICR_IGROUPR0 (SGI_BASE + 0x0080)

/* Cacheability/shareability fields shared by PROPBASER, PENDBASER and the
 * ITS BASER/CBASER registers: inner WB RA/WA, inner shareable. */
#define GIC_BASER_INNER_WAWB (7UL << 7)
#define GIC_BASER_SH_INNER   (1UL << 10)
#define GICR_PENDBASER_PTZ   (1UL << 62)

static void dist_wait_rwp(void)
{
	u64 end = now_ticks() + us_to_ticks(100000);
	while ((readl(GICD_BASE + GICD_CTLR) & GICD_CTLR_RWP) && now_ticks() < end)
		cpu_relax();
}

bool gic_dist_init(const char **why)
{
	u32 typer = readl(GICD_BASE + GICD_TYPER);

	if (!(typer & (1u << 17))) {   /* GICD_TYPER.LPIS */
		*why = "gic-without-lpis";
		return false;
	}
	writel(GICD_BASE + GICD_CTLR, 0);
	dist_wait_rwp();
	/* ARE_NS (bit 4) + EnableGrp1NS/Grp1A (bit 1) + Grp1/Grp0 (bit 0):
	 * the same value works whether the GIC has one or two security states. */
	writel(GICD_BASE + GICD_CTLR, (1u << 4) | (1u << 1) | (1u << 0));
	dist_wait_rwp();
	return true;
}

int gic_find_redists(struct redist *rd, int max)
{
	u64 base = GICR_BASE;
	int n = 0;

	for (;;) {
		u64 typer = readq(base + GICR_TYPER);
		u64 aff = typer >> 32;   /* Aff3.Aff2.Aff1.Aff0 */

		if (n < max) {
			rd[n].base = base;
			rd[n].mpidr = (aff & 0xffffff) | ((aff >> 24) << 32);
			rd[n].procnum = (u32)((typer >> 8) & 0xffff);
			/* Wake the redistributor so it forwards interrupts to its PE. */
			writel(base + GICR_WAKER,
			       readl(base + GICR_WAKER) & ~GICR_WAKER_PROCESSOR_SLEEP);
			u64 end = now_ticks() + us_to_ticks(100000);
			while ((readl(base + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP) &&
			       now_ticks() < end)
				cpu_relax();
			/* All SGIs/PPIs group 1 (unused, but defined). */
			writel(base + GICR_IGROUPR0, ~0u);
			n++;
		}
		if (typer & GICR_TYPER_LAST)
			break;
		/* Two 64 KiB frames (RD, SGI), four with GICv4 vLPI frames. */
		base += (typer & GICR_TYPER_VLPIS) ? 0x40000 : 0x20000;
	}
	return n;
}

bool gic_redist_enable_lpis(const struct redist *rd, u64 prop, unsigned idbits, u64 pend,
			    const char **why)
{
	if (readl(rd->base + GICR_CTLR) & GICR_CTLR_ENABLE_LPIS) {
		/* Once set it may not be clearable: tables cannot be moved. */
		*why = "lpis-already-enabled";
		return false;
	}
	writeq(rd->base + GICR_PROPBASER,
	       prop | GIC_BASER_INNER_WAWB | GIC_BASER_SH_INNER | (idbits - 1));
	/* PTZ: the pending table is known to be zero (we cleared it). */
	writeq(rd->base + GICR_PENDBASER,
	       pend | GIC_BASER_INNER_WAWB | GIC_BASER_SH_INNER | GICR_PENDBASER_PTZ);
	dsb_sy();
	writel(rd->base + GICR_CTLR, readl(rd->base + GICR_CTLR) | GICR_CTLR_ENABLE_LPIS);
	dsb_sy();
	if (!(readl(rd->base + GICR_CTLR) & GICR_CTLR_ENABLE_LPIS)) {
		*why = "enable-lpis-failed";
		return false;
	}
	return true;
}

void gic_cpu_init(void)
{
	/* ICC_SRE_EL1.SRE: use the system-register CPU interface. */
	write_sysreg(read_sysreg(S3_0_C12_C12_5) | 1, S3_0_C12_C12_5);
	isb();
	write_sysreg(0xff, S3_0_C4_C6_0);   /* ICC_PMR_EL1: let every priority through */
	write_sysreg(0, S3_0_C12_C12_3);    /* ICC_BPR1_EL1 */
	write_sysreg(0, S3_0_C12_C12_4);    /* ICC_CTLR_EL1: EOImode 0, EOI also deactivates */
	write_sysreg(1, S3_0_C12_C12_7);    /* ICC_IGRPEN1_EL1 */
	isb();
}
