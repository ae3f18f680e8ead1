/* GICv3 distributor, redistributors and CPU interface (ICC_* sysregs). */
#ifndef GUEST_GIC_H
#define GUEST_GIC_H
#include "lib.h"

#define GICD_BASE 0x08000000UL
#define GICR_BASE 0x080a0000UL

#define LPI_BASE_INTID 8192u
#define INTID_SPURIOUS 1023u

struct redist {
	u64 base;        /* RD_base frame */
	u64 mpidr;       /* affinity in MPIDR_EL1 layout (Aff3 at [39:32]) */
	u32 procnum;     /* GICR_TYPER.Processor_Number, the ITS RDbase when PTA=0 */
};

/* Distributor: affinity routing + group 1 on.  Returns false (and a reason)
 * if the GIC cannot do LPIs. */
bool gic_dist_init(const char **why);
/* Walks the redistributor region until GICR_TYPER.Last; wakes each one. */
int gic_find_redists(struct redist *rd, int max);
/* Program PROPBASER/PENDBASER and set EnableLPIs. idbits = number of INTID bits. */
bool gic_redist_enable_lpis(const struct redist *rd, u64 prop, unsigned idbits, u64 pend,
			    const char **why);
/* Per-CPU: system-register interface on, priority mask open, group 1 on. */
void gic_cpu_init(void);

static inline u32 gic_ack(void) { return (u32)read_sysreg(S3_0_C12_C12_0); }   /* ICC_IAR1_EL1 */
static inline void gic_eoi(u32 intid) { write_sysreg(intid, S3_0_C12_C12_1); }  /* ICC_EOIR1_EL1 */

static inline u64 mpidr_aff(void)
{
	return read_sysreg(mpidr_el1) & 0xff00ffffffUL;
}
#endif
