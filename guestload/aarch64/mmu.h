#ifndef GUEST_MMU_H
#define GUEST_MMU_H
void mmu_build_tables(void);   /* CPU0, once */
void mmu_enable(void);         /* every CPU */
void mmu_map_ram(u64 top);     /* CPU0, once RAM's size is known: RAM above 4 GiB */
#endif
