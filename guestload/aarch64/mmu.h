#ifndef GUEST_MMU_H
#define GUEST_MMU_H
void mmu_build_tables(void);   /* CPU0, once */
void mmu_enable(void);         /* every CPU */
#endif
